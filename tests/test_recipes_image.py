"""recipes/image_classification.py on a tiny ViT and the real CIFAR-10 (parquet, as on the Hub)."""

import csv
import logging
import os

import image_classification
import numpy as np
import pytest
import torch
from datasets import load_dataset
from image_classification import (
    EvalTransform,
    TrainTransform,
    image_size_forward_options,
    model_input_size,
    random_resized_crop_box,
    resize_image_processor,
    set_drop_path_rate,
)
from PIL import Image
from recipe_helpers import QUIET, read_json, run_recipe, save_tiny_vit, shared_data
from recipe_utils import load_data_file, set_labels, take_samples
from tiny_models import tiny_model
from transformers import (
    AutoModelForImageClassification,
    BitImageProcessor,
    CLIPImageProcessor,
    ConvNextImageProcessor,
    Dinov2Config,
    EfficientNetConfig,
    TimmWrapperConfig,
    ViTConfig,
    ViTImageProcessor,
)


CIFAR10_TRAIN, CIFAR10_TEST = shared_data("cifar10", "train.parquet"), shared_data("cifar10", "test.parquet")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    return save_tiny_vit(str(tmp_path_factory.mktemp("tiny-vit")), num_labels=10)


@pytest.fixture(scope="module")
def cifar10_images(tmp_path_factory):
    """Three CIFAR-10 classes as image folders (train: 4 per class, validation: 2 per class) and as a CSV of
    image paths."""
    root = tmp_path_factory.mktemp("cifar10-folders")
    test = load_dataset("parquet", data_files={"test": CIFAR10_TEST}, split="test", cache_dir=str(root / "cache"))
    counts, rows = {}, []
    for example in test:
        name = CIFAR10_CLASSES[example["label"]]
        if name not in ("cat", "dog", "ship") or counts.get(name, 0) == 6:
            continue
        index = counts[name] = counts.get(name, 0) + 1
        split = "train" if index <= 4 else "validation"
        path = root / split / name / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        example["img"].save(path)
        rows.append({"path": str(path), "animal": name, "split": split})
        if len(counts) == 3 and all(count == 6 for count in counts.values()):
            break
    for split in ("train", "validation"):
        with open(root / f"{split}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "animal"])
            writer.writeheader()
            writer.writerows({"path": row["path"], "animal": row["animal"]} for row in rows if row["split"] == split)
    return root


@pytest.fixture
def run_image(tiny_vit, tmp_path):
    def run(arguments: str, model=None, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {model or tiny_vit} --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
            --per_device_train_batch_size 16 --per_device_eval_batch_size 32 --num_train_epochs 1
            --learning_rate 1e-3 --layer_decay 0.65
        """
        run_recipe("image_classification", common.split() + QUIET + arguments.split())
        return output_dir

    return run


def test_cifar10_parquet_trains_evaluates_and_records_the_layerwise_rates(run_image, capsys):
    output_dir = run_image(
        f"--train_file {CIFAR10_TRAIN} --validation_file {CIFAR10_TEST} --max_train_samples 64 --max_eval_samples 64"
    )
    results = read_json(output_dir, "all_results.json")
    assert results["train_samples"] == 64 and results["eval_samples"] == 64
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 4
    assert list(read_json(output_dir, "config.json")["id2label"].values()) == CIFAR10_CLASSES
    assert os.path.isfile(os.path.join(output_dir, "preprocessor_config.json"))

    lines = capsys.readouterr().out.splitlines()
    start = lines.index("***** layer-wise learning rates (L=3 blocks, depths by block_stack) *****")
    table = [line.split() for line in lines[start + 3 : start + 8]]
    assert [row[1] for row in table] == ["embeddings"] + [f"vit.layers.{i}" for i in range(3)] + ["head"]
    assert [row[4] for row in table] == [f"{1e-3 * 0.65**k:.3e}" for k in (4, 3, 2, 1, 0)]
    with open(os.path.join(output_dir, "README.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "- layer_decay: 0.65\n" in card and "| 4 | `head` |" in card


def test_image_folders(run_image, cifar10_images, tmp_path):
    tiny_vit_3 = save_tiny_vit(str(tmp_path / "vit-3"), num_labels=3)
    output_dir = run_image(
        f"--train_dir {cifar10_images / 'train'} --validation_dir {cifar10_images / 'validation'}", model=tiny_vit_3
    )
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["eval_samples"]) == (12, 6)
    assert read_json(output_dir, "config.json")["id2label"] == {"0": "cat", "1": "dog", "2": "ship"}


def test_a_csv_of_image_paths(run_image, cifar10_images):
    output_dir = run_image(
        f"--train_file {cifar10_images / 'train.csv'} --validation_file {cifar10_images / 'validation.csv'} "
        "--image_column path --label_column animal --ignore_mismatched_sizes"
    )
    assert read_json(output_dir, "all_results.json")["eval_samples"] == 6
    assert read_json(output_dir, "config.json")["id2label"] == {"0": "cat", "1": "dog", "2": "ship"}


def test_evaluation_images_split_off_the_training_images(run_image, cifar10_images):
    output_dir = run_image(
        f"--train_file {cifar10_images / 'train.csv'} --image_column path --label_column animal "
        "--train_val_split 0.25 --ignore_mismatched_sizes"
    )
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["eval_samples"]) == (9, 3)


def _refusal(arguments: str, tmp_path) -> str:
    """The message the recipe stops with; the model does not exist, so the data was checked before loading it."""
    common = f"--model_name_or_path /no/such/model --output_dir {tmp_path / 'out'} --cache_dir {tmp_path / 'cache'}"
    with pytest.raises(ValueError) as error:
        image_classification.main(common.split() + QUIET + arguments.split())
    return str(error.value)


def test_a_column_without_images_is_named(tmp_path):
    message = _refusal(f"--train_file {CIFAR10_TEST} --image_column label --label_column label --do_train", tmp_path)
    assert message == (
        f"Column 'label' of {CIFAR10_TEST} holds ClassLabel(names={CIFAR10_CLASSES!r}), not images or image paths. "
        "Set --image_column to the column of images; the columns are ['img', 'label']."
    )


def test_paths_that_are_not_images_are_named(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text(f"path,label\n{listing},a\n", encoding="utf-8")
    message = _refusal(f"--train_file {listing} --image_column path --do_train", tmp_path)
    assert message == (
        f"{listing}, row 1, column 'path': is not an image PIL can read (UnidentifiedImageError: cannot identify "
        f"image file '{listing}')."
    )


def test_data_without_an_image_column_is_named(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("text,label\nhello,a\n", encoding="utf-8")
    assert _refusal(f"--train_file {listing} --do_train", tmp_path) == (
        f"{listing} has no column of images; its columns are ['text', 'label']. Set --image_column to the column "
        "that holds the images or their paths."
    )


def test_missing_columns_folders_and_splits_are_named(tmp_path):
    assert _refusal(f"--train_file {CIFAR10_TEST} --label_column fine_label --do_train", tmp_path) == (
        f"{CIFAR10_TEST} has no column 'fine_label'; its columns are ['img', 'label']. "
        "Set --label_column to one of them."
    )
    nowhere = tmp_path / "nowhere"
    assert _refusal(f"--train_dir {nowhere}", tmp_path) == f"--train_dir {nowhere}: no such folder."
    assert _refusal(f"--train_file {CIFAR10_TEST}", tmp_path) == (
        "--do_eval needs evaluation images: --validation_dir, --validation_file, a Hub evaluation split, or "
        "--train_val_split to split some off the training data."
    )
    assert _refusal(f"--train_file {CIFAR10_TEST} --train_dir {tmp_path}", tmp_path).startswith(
        "Give the images one way:"
    )


def test_a_pretrained_head_for_another_number_of_classes_is_refused(tiny_vit, cifar10_images, tmp_path):
    common = f"--model_name_or_path {tiny_vit} --output_dir {tmp_path / 'out'} --cache_dir {tmp_path / 'cache'}"
    with pytest.raises(ValueError) as error:
        data = f"--train_dir {cifar10_images / 'train'} --do_train"
        image_classification.main(common.split() + QUIET + data.split())
    assert str(error.value).startswith(
        f"{tiny_vit} is a ViTForImageClassification whose head predicts 10 labels ['LABEL_0', "
    )
    assert str(error.value).endswith(
        f"but image folder {cifar10_images / 'train'} has 3 ['cat', 'dog', 'ship']. Pass --ignore_mismatched_sizes "
        "to train a new head, or check --label_column."
    )


def test_random_resized_crop_boxes_stay_in_the_image_and_in_the_ranges():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(50, 40)
        width, height = right - left, bottom - top
        assert 0 <= left < right <= 50 and 0 <= top < bottom <= 40
        # Rounding to whole pixels moves area and ratio a little beyond the drawn ranges.
        assert 0.08 * 2000 * 0.9 <= width * height <= 2000
        assert 3 / 4 * 0.9 <= width / height <= 4 / 3 * 1.1


def test_random_resized_crop_falls_back_to_the_central_crop():
    # No crop of at least 90% of a 1000x10 image has an aspect ratio within 3/4..4/3: the largest central one.
    assert random_resized_crop_box(1000, 10, scale=(0.9, 1.0)) == (493, 0, 506, 10)
    assert random_resized_crop_box(10, 1000, scale=(0.9, 1.0)) == (0, 493, 10, 506)
    assert random_resized_crop_box(30, 30, scale=(0.9, 1.0), ratio=(2.0, 3.0)) == (0, 7, 30, 22)


def test_train_transform_crops_flips_and_normalizes_as_the_processor_does():
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    transform = TrainTransform(processor)
    gray = Image.new("RGB", (48, 40), (128, 128, 128))
    pixels = transform([gray, gray])
    assert pixels.shape == (2, 3, 32, 32)
    # Any crop of a uniform image is uniform; the ViT processor maps x to (x / 255 - 0.5) / 0.5.
    torch.testing.assert_close(pixels, torch.full_like(pixels, (128 / 255 - 0.5) / 0.5), rtol=0, atol=1e-6)

    half = np.zeros((40, 40, 3), dtype=np.uint8)
    half[:, 20:] = 255  # dark left half, bright right half
    torch.manual_seed(0)
    flipped = unflipped = 0
    for _ in range(60):
        crop = np.asarray(transform.augment(Image.fromarray(half)), dtype=float)
        left, right = crop[:, :16].mean(), crop[:, 16:].mean()
        flipped += left > right
        unflipped += left < right
    assert flipped > 10 and unflipped > 10


def test_eval_transform_is_the_processor_alone():
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    expected = processor([image], return_tensors="pt")["pixel_values"]
    assert torch.equal(EvalTransform(processor)([image]), expected)


def test_model_input_size_follows_the_processor():
    assert model_input_size(ViTImageProcessor(size={"height": 32, "width": 48})) == (32, 48)
    assert model_input_size(ConvNextImageProcessor()) == (384, 384)
    clip = CLIPImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    assert model_input_size(clip) == (224, 224)


CIFAR10_SUBSETS = (
    f"--train_file {CIFAR10_TRAIN} --validation_file {CIFAR10_TEST} --max_train_samples 32 --max_eval_samples 32"
)


def test_eval_strategy_without_do_train_trains(run_image):
    output_dir = run_image(f"{CIFAR10_SUBSETS} --eval_strategy epoch")
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["epoch"], results["eval_samples"]) == (32, 1.0, 32)
    state = read_json(output_dir, "trainer_state.json")
    assert state["global_step"] == 2
    assert [entry["epoch"] for entry in state["log_history"] if "eval_accuracy" in entry] == [1.0]


def test_a_run_that_trains_nothing_says_so(run_image, tiny_vit, tmp_path, caplog):
    for stages in ("--do_eval", "--do_train false --eval_strategy epoch"):
        output_dir = str(tmp_path / stages.split()[-1])
        with caplog.at_level(logging.WARNING, logger="recipe_utils"):
            run_image(f"{CIFAR10_SUBSETS} {stages}", output_dir=output_dir)
        assert "train_samples" not in read_json(output_dir, "all_results.json")
        assert caplog.messages[-1] == (
            "This run trained nothing (--do_train false, or only --do_eval / --do_predict given): every score above "
            f"is that of {tiny_vit} as loaded. Drop those flags, or pass --do_train, to fine-tune."
        )


def test_an_imagenet_head_lists_its_first_labels_and_their_count():
    config = ViTConfig(num_labels=1000, architectures=["ViTForImageClassification"])
    with pytest.raises(ValueError) as error:
        set_labels(
            config,
            ["cat", "dog"],
            head_suffix="ForImageClassification",
            model_name_or_path="google/vit-base-patch16-224",
            labels_source="train.parquet",
            ignore_mismatched_sizes=False,
        )
    assert str(error.value) == (
        "google/vit-base-patch16-224 is a ViTForImageClassification whose head predicts 1000 labels ['LABEL_0', "
        "'LABEL_1', 'LABEL_2', 'LABEL_3', 'LABEL_4', ...], but train.parquet has 2 ['cat', 'dog']. Pass "
        "--ignore_mismatched_sizes to train a new head, or check --label_column."
    )


def test_image_size_resizes_the_processor_and_the_dinov2_grid(run_image, tmp_path):
    tiny_dinov2 = save_tiny_vit(str(tmp_path / "dinov2"), num_labels=10, model_type="dinov2")
    output_dir = run_image(f"{CIFAR10_SUBSETS} --image_size 16", model=tiny_dinov2)
    assert read_json(output_dir, "all_results.json")["train_samples"] == 32
    assert read_json(output_dir, "preprocessor_config.json")["size"] == {"height": 16, "width": 16}
    # The fine-tuned model still holds its 4 x 4 grid of position embeddings (32 px, 8 px patches) and
    # interpolates it to the 2 x 2 grid of 16 px images.
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert model.dinov2.embeddings.position_embeddings.shape == (1, 1 + 16, 32)
    assert model(pixel_values=torch.zeros(2, 3, 16, 16)).logits.shape == (2, 10)


def test_image_size_passes_interpolate_pos_encoding_to_vit(run_image):
    output_dir = run_image(f"{CIFAR10_SUBSETS} --image_size 24")
    assert read_json(output_dir, "preprocessor_config.json")["size"] == {"height": 24, "width": 24}
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 2


def test_image_size_forward_options_check_the_model_on_one_image():
    vit, dinov2 = tiny_model("vit", num_labels=3).train(), tiny_model("dinov2", num_labels=3).eval()
    assert image_size_forward_options(vit, 16) == {"interpolate_pos_encoding": True}
    assert image_size_forward_options(dinov2, 48) == {}
    assert vit.training and not dinov2.training  # the check leaves each model in its mode
    with pytest.raises(ValueError) as error:
        image_size_forward_options(vit, 4)  # smaller than one 8 x 8 patch
    assert str(error.value).startswith("ViTForImageClassification does not take 4x4 images (--image_size 4): ")


def test_resize_image_processor_keeps_the_ratio_of_resize_to_crop():
    vit = ViTImageProcessor(size={"height": 224, "width": 224})
    resize_image_processor(vit, 112)
    assert (vit.size, model_input_size(vit)) == ({"height": 112, "width": 112}, (112, 112))
    # DINOv2's processor: shortest edge 256, center crop 224.
    dinov2 = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    resize_image_processor(dinov2, 112)
    assert (dinov2.size, dinov2.crop_size) == ({"shortest_edge": 128}, {"height": 112, "width": 112})
    image = Image.new("RGB", (300, 200))
    assert EvalTransform(dinov2)([image]).shape == (1, 3, 112, 112)
    assert TrainTransform(dinov2)([image]).shape == (1, 3, 112, 112)
    convnext = ConvNextImageProcessor(size={"shortest_edge": 384})
    resize_image_processor(convnext, 160)
    assert convnext.size == {"shortest_edge": 160}
    assert EvalTransform(convnext)([image]).shape == (1, 3, 160, 160)


def test_drop_path_rate_reaches_the_model(run_image, tmp_path):
    tiny_dinov2 = save_tiny_vit(str(tmp_path / "dinov2"), num_labels=10, model_type="dinov2")
    output_dir = run_image(f"{CIFAR10_SUBSETS} --drop_path_rate 0.2", model=tiny_dinov2)
    assert read_json(output_dir, "config.json")["drop_path_rate"] == 0.2
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert [layer.drop_path.drop_prob for layer in model.dinov2.encoder.layer] == [0.2, 0.2, 0.2]


def test_drop_path_rate_names_each_models_setting_and_refuses_a_model_without_it(run_image, tiny_vit):
    configs = Dinov2Config(), EfficientNetConfig(), TimmWrapperConfig(model_args={"pretrained_strict": False})
    for config in configs:
        set_drop_path_rate(config, 0.3)
    assert configs[0].drop_path_rate == 0.3 and configs[1].drop_connect_rate == 0.3
    assert configs[2].model_args == {"pretrained_strict": False, "drop_path_rate": 0.3}
    with pytest.raises(ValueError) as error:
        run_image(f"{CIFAR10_SUBSETS} --drop_path_rate 0.1")
    assert str(error.value) == (
        "--drop_path_rate 0.1: ViTConfig has no stochastic depth (no drop_path_rate or drop_connect_rate). Leave "
        "--drop_path_rate out, or choose a model that has it (DINOv2, BEiT, Swin, ConvNeXt, EfficientNet, timm "
        "models)."
    )


def test_label_smoothing_is_the_loss_of_training_and_evaluation(run_image):
    output_dir = run_image(f"{CIFAR10_SUBSETS} --label_smoothing_factor 0.1 --per_device_eval_batch_size 32")
    eval_loss = read_json(output_dir, "all_results.json")["eval_loss"]

    # The same 32 evaluation images, through the saved model: (1 - 0.1) * cross-entropy + 0.1 * the mean over
    # the 10 classes of -log p (transformers' LabelSmoother), averaged over the images.
    images = take_samples(load_data_file(CIFAR10_TEST), 32, seed=42)
    model = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    pixel_values = EvalTransform(ViTImageProcessor.from_pretrained(output_dir))(images["img"])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(pixel_values=pixel_values).logits, dim=-1)
    cross_entropy = -log_probs[torch.arange(32), torch.tensor(images["label"])]
    smoothed = (0.9 * cross_entropy - 0.1 * log_probs.mean(dim=-1)).mean().item()
    assert eval_loss == pytest.approx(smoothed, abs=1e-6)
    # The briefly trained tiny model is close to uniform, so the two losses are close, but 500 times the
    # tolerance apart (5.6e-4).
    assert abs(eval_loss - cross_entropy.mean().item()) > 5e-4
