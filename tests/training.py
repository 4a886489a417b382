"""Small training fixtures shared by the tests."""

import torch

from finetune_llrd import LLRDTrainingArguments


class RandomTokens(torch.utils.data.Dataset):
    """A fixed set of random token sequences with labels that depend on the first token."""

    def __init__(self, size=32, length=8, vocab=99, num_labels=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, vocab, (size, length), generator=generator)
        self.labels = self.input_ids[:, 0] % num_labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def training_args(output_dir, cls=LLRDTrainingArguments, **overrides):
    """Arguments for a few deterministic CPU steps with no reporting and no saving."""
    settings = dict(
        output_dir=str(output_dir),
        learning_rate=1e-3,
        weight_decay=0.01,
        per_device_train_batch_size=8,
        max_steps=4,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    settings.update(overrides)
    return cls(**settings)
