"""recipes/object_detection.py on the real BCCD blood smears (a few images) with tiny detection models built from
configs: an RF-DETR whose folder names transformers' torchvision-only ``RfDetrImageProcessor``, and a DETR on a
transformers ResNet backbone; the data checks, the four data formats, RF-DETR's processor in plain torch against
transformers' source, COCO mAP, and 2 gloo ranks against 1 process."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import object_detection
import pytest
import torch
import transformers
from launch import accelerate_launch
from PIL import Image
from recipe_helpers import QUIET, RECIPES_DIR, read_json, run_recipe, shared_data
from recipe_utils import DataError
from recipe_utils.detection import (
    RfDetrImageProcessorTorch,
    check_boxes,
    check_classes_known,
    mean_average_precision,
    read_coco,
    read_hub_split,
    read_image_folder,
    read_voc,
)
from tiny_models import QUERY_DETR_DECODER, RESNET, RF_DETR_BACKBONE


BCCD = shared_data("bccd")
CLASSES = ["Platelets", "RBC", "WBC"]
pytestmark = pytest.mark.skipif(not os.path.isdir(BCCD), reason="the real BCCD data is not at ../shared/data/bccd")


def save_tiny_rf_detr(directory: str) -> str:
    """A tiny RF-DETR (a 4-block windowed DINOv2 of hidden 32, 10 queries in 2 groups) saved with a
    preprocessor_config.json that names RfDetrImageProcessor (56 x 56), as a Hub RF-DETR folder does."""
    torch.manual_seed(0)
    config = transformers.RfDetrConfig(
        backbone_config=dict(RF_DETR_BACKBONE),
        num_labels=3,
        id2label=dict(enumerate(CLASSES)),
        label2id={name: index for index, name in enumerate(CLASSES)},
        num_queries=10,
        intermediate_size=32,
        **QUERY_DETR_DECODER,
    )
    transformers.RfDetrForObjectDetection(config).save_pretrained(directory)
    RfDetrImageProcessorTorch(size={"height": 56, "width": 56}).save_pretrained(directory)
    return directory


def save_tiny_detr(directory: str) -> str:
    """A tiny DETR on a transformers ResNet backbone (``use_timm_backbone=False``), with DETR's PIL processor."""
    torch.manual_seed(0)
    config = transformers.DetrConfig(
        backbone_config=transformers.ResNetConfig(**RESNET, out_features=["stage4"]),
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=10,
        num_labels=3,
        id2label=dict(enumerate(CLASSES)),
        label2id={name: index for index, name in enumerate(CLASSES)},
    )
    transformers.DetrForObjectDetection(config).save_pretrained(directory)
    transformers.DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_rf_detr(tmp_path_factory):
    return save_tiny_rf_detr(str(tmp_path_factory.mktemp("tiny-rf-detr")))


@pytest.fixture(scope="module")
def tiny_detr(tmp_path_factory):
    return save_tiny_detr(str(tmp_path_factory.mktemp("tiny-detr")))


def bccd_args(model: str, output_dir, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        model,
        "--train_dir",
        BCCD,
        "--validation_dir",
        BCCD,
        "--max_train_samples",
        "4",
        "--max_eval_samples",
        "3",
        "--per_device_train_batch_size",
        "2",
        "--per_device_eval_batch_size",
        "2",
        "--output_dir",
        str(output_dir),
        *QUIET,
        *extra,
    ]


EVAL_KEYS = {
    "eval_loss",
    "eval_map",
    "eval_map_50",
    "eval_map_75",
    "eval_map_small",
    "eval_map_medium",
    "eval_map_large",
    "eval_mar_100",
    "eval_map_Platelets",
    "eval_map_RBC",
    "eval_map_WBC",
    "eval_samples",
}


def test_tiny_rf_detr_trains_two_steps_and_evaluates_map_on_bccd(tiny_rf_detr, tmp_path, capsys):
    assert read_json(tiny_rf_detr, "preprocessor_config.json")["image_processor_type"] == "RfDetrImageProcessor"
    run_recipe(
        "object_detection",
        bccd_args(tiny_rf_detr, tmp_path, "--max_steps", "2", "--layer_decay", "0.8", "--learning_rate", "1e-3")
        + ["--do_train", "--do_eval", "--do_predict", "--test_dir", BCCD, "--max_predict_samples", "2"],
    )
    results = read_json(str(tmp_path), "all_results.json")
    assert {"predict_map", "predict_map_50", "predict_map_RBC"} <= set(results)
    with open(os.path.join(tmp_path, "predictions.json"), encoding="utf-8") as handle:
        predictions = json.load(handle)
    # Every (query, class) pair of each of the 2 test images (10 queries x 3 classes: fewer than COCO's 100),
    # boxes in the 640 x 480 pixels.
    assert len(predictions) == 2 * 30 and {p["image_id"] for p in predictions} == {0, 1}
    assert {p["category"] for p in predictions} <= set(CLASSES)
    assert all(p["file_name"].startswith(os.path.join(BCCD, "JPEGImages")) for p in predictions)
    assert all(-1 <= p["bbox"][0] <= 641 and p["bbox"][2] >= 0 for p in predictions)
    assert set(results) >= EVAL_KEYS
    assert results["eval_samples"] == 3 and results["train_samples"] == 4
    assert all(-1.0 <= results[key] <= 1.0 for key in EVAL_KEYS - {"eval_loss", "eval_samples"})
    assert read_json(str(tmp_path), "trainer_state.json")["global_step"] == 2
    # Saved as transformers' RF-DETR processor, with the recipe's size, so that it loads with torchvision.
    saved = read_json(str(tmp_path), "preprocessor_config.json")
    assert saved["image_processor_type"] == "RfDetrImageProcessor" and saved["size"] == {"height": 56, "width": 56}
    assert read_json(str(tmp_path), "config.json")["id2label"] == {"0": "Platelets", "1": "RBC", "2": "WBC"}
    out = capsys.readouterr().out
    assert "***** layer-wise learning rates (L=4 blocks, depths by block_stack) *****" in out
    table = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in table] == [0, 1, 2, 3, 4, 5]
    assert [row[1] for row in table[1:5]] == [f"model.backbone.backbone.encoder.layer.{i}" for i in range(4)]
    # 1e-3 x 0.8^(5 - depth): the head at the base rate, the first block at 0.8^4 of it.
    assert [float(row[-2]) for row in table] == pytest.approx(
        [1e-3 * 0.8 ** (5 - depth) for depth in range(6)], rel=1e-3
    )


def test_tiny_detr_with_a_resnet_backbone_is_told_which_backbone_parameters_train(tiny_detr, tmp_path, caplog):
    # Built from its config, HF's DETR freezes its whole ResNet: "stage.1".."stage.3" stay trainable by name, but
    # the ResNet's names say "stages.1".
    built = transformers.DetrForObjectDetection(transformers.DetrConfig.from_pretrained(tiny_detr))
    object_detection.check_frozen_backbone(built, train_backbone=False)
    assert "DetrForObjectDetection froze 14 of its backbone's 14 parameters (all of them)" in caplog.text
    # Loaded from a checkpoint, every weight is trainable again, the stem and first stage included.
    run_recipe("object_detection", bccd_args(tiny_detr, tmp_path / "loaded", "--max_steps", "2"))
    assert "All 14 parameters of DetrForObjectDetection's backbone train, its stem and first stage" in caplog.text
    assert "eval_map" in read_json(str(tmp_path / "loaded"), "all_results.json")
    caplog.clear()
    run_recipe("object_detection", bccd_args(tiny_detr, tmp_path / "trained", "--max_steps", "2", "--train_backbone"))
    assert (
        "--train_backbone: 11 of the backbone's 14 parameters train (all but the stem and first stage" in caplog.text
    )


def test_bccd_two_zero_size_boxes_are_dropped_naming_their_images(caplog):
    train, train_report = check_boxes(read_voc(BCCD, "train"), "bccd train")
    val, val_report = check_boxes(read_voc(BCCD, "val"), "bccd val")
    image = os.path.join(BCCD, "JPEGImages", "BloodImage_{}.jpg")
    assert train_report.dropped == [f"{image.format('00343')} (RBC [181.0, 329.0, 0.0, 0.0])"]
    assert val_report.dropped == [f"{image.format('00338')} (RBC [504.0, 337.0, 0.0, 0.0])"]
    assert train_report.clipped == val_report.clipped == [] and train_report.without_boxes == []
    assert (len(train), len(val)) == (205, 87)
    assert sum(len(row["objects"]["bbox"]) for row in train + val) == 2805 + 1138 - 2
    assert f"bccd train: 1 box of zero or negative width or height, dropped: {image.format('00343')}" in caplog.text


def write_voc(folder, entries: dict[str, tuple[str | None, list[tuple[str, list[float]]]]], split="train") -> str:
    """A Pascal VOC folder: image id -> (the BCCD image to copy, or None for none; [(class, [xmin, ymin, xmax,
    ymax])])."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for image_id, (source, objects) in entries.items():
        if source is not None:
            shutil.copy(
                os.path.join(BCCD, "JPEGImages", f"{source}.jpg"),
                os.path.join(folder, "JPEGImages", f"{image_id}.jpg"),
            )
        boxes = "".join(
            f"<object><name>{name}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
            f"<ymax>{box[3]}</ymax></bndbox></object>"
            for name, box in objects
        )
        with open(os.path.join(folder, "Annotations", f"{image_id}.xml"), "w", encoding="utf-8") as handle:
            handle.write(
                f"<annotation><filename>{image_id}.jpg</filename><size><width>640</width><height>480</height>"
                f"</size>{boxes}</annotation>"
            )
    with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(entries) + "\n")
    return str(folder)


def test_a_box_outside_its_image_is_clipped_and_counted_or_refused(tmp_path, caplog):
    folder = write_voc(
        tmp_path, {"a": ("BloodImage_00001", [("RBC", [600, 400, 700, 500]), ("WBC", [10, 10, 50, 50])])}
    )
    rows, report = check_boxes(read_voc(folder, "train"), "voc train")
    assert rows[0]["objects"] == {
        "bbox": [[600.0, 400.0, 40.0, 80.0], [10.0, 10.0, 40.0, 40.0]],
        "category": ["RBC", "WBC"],
    }
    image = os.path.join(folder, "JPEGImages", "a.jpg")
    assert report.clipped == [f"{image} (RBC [600.0, 400.0, 100.0, 100.0])"]
    assert f"voc train: 1 box reaching outside its image, clipped to it: {image}" in caplog.text
    with pytest.raises(DataError) as refused:
        check_boxes(read_voc(folder, "train"), "voc train", clip_boxes=False)
    annotation = os.path.join(folder, "Annotations", "a.xml")
    assert str(refused.value).splitlines()[0] == (
        f"voc train: {annotation}: a RBC box [600.0, 400.0, 100.0, 100.0] reaches outside the 640x480 image."
    )


def test_a_missing_or_unreadable_image_is_named_and_images_without_boxes_counted(tmp_path, caplog):
    folder = write_voc(
        tmp_path,
        {"gone": (None, [("RBC", [1, 1, 20, 20])]), "empty": ("BloodImage_00001", []), "bad": (None, [])},
    )
    with open(os.path.join(folder, "JPEGImages", "bad.jpg"), "w", encoding="utf-8") as handle:
        handle.write("not an image")
    with pytest.raises(DataError) as refused:
        check_boxes(read_voc(folder, "train"), "voc train")
    lines = str(refused.value).splitlines()
    assert lines[0].startswith(
        f"voc train: the image {folder}/JPEGImages/gone.jpg listed in {folder}/Annotations/gone.xml is missing"
    )
    assert lines[1].startswith(
        f"voc train: the image {folder}/JPEGImages/bad.jpg listed in {folder}/Annotations/bad.xml cannot be read"
    )
    os.remove(os.path.join(folder, "JPEGImages", "bad.jpg"))
    write_voc(tmp_path, {"empty": ("BloodImage_00001", []), "other": ("BloodImage_00003", [])})
    rows, report = check_boxes(read_voc(folder, "train"), "voc train")
    assert len(rows) == 2 and len(report.without_boxes) == 2
    assert "voc train: 2 images without boxes (kept: background to learn)." in caplog.text


def test_a_validation_class_training_never_has_is_refused_before_the_model_loads(tmp_path):
    folder = write_voc(tmp_path / "voc", {"a": ("BloodImage_00001", [("RBC", [1, 1, 30, 30])])}, split="train")
    write_voc(tmp_path / "voc", {"b": ("BloodImage_00003", [("Eosinophil", [1, 1, 30, 30])])}, split="val")
    args = ["--model_name_or_path", str(tmp_path / "no-model"), "--train_dir", folder, "--validation_dir", folder]
    with pytest.raises(DataError) as refused:  # the model folder does not exist: the data is checked first
        run_recipe("object_detection", [*args, "--output_dir", str(tmp_path / "out"), *QUIET])
    annotation = os.path.join(folder, "Annotations", "b.xml")
    assert str(refused.value).splitlines()[0] == (
        f"{folder} (val): {annotation} has a box of class 'Eosinophil', which the training data ({folder} (train)) "
        "never has."
    )
    check_classes_known([{"file": "x", "objects": {"category": ["RBC"]}}], "s", ["RBC"], "t")  # known: no error


def bccd_rows(count: int) -> list[dict]:
    rows, _ = check_boxes(read_voc(BCCD, "val")[:count], "bccd val")
    return rows


def test_coco_json_image_folder_and_hub_formats_read_the_same_boxes(tmp_path):
    rows = bccd_rows(3)
    names = sorted({name for row in rows for name in row["objects"]["category"]})
    coco = {
        "images": [
            {"id": 10 + i, "file_name": os.path.basename(row["image"]), "width": 640, "height": 480}
            for i, row in enumerate(rows)
        ],
        "annotations": [
            {
                "id": len(rows) * 100 + j * 10 + i,
                "image_id": 10 + i,
                "bbox": box,
                "category_id": names.index(name) + 1,
                "iscrowd": 0,
            }
            for i, row in enumerate(rows)
            for j, (box, name) in enumerate(zip(row["objects"]["bbox"], row["objects"]["category"]))
        ],
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(names)],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    from_coco = read_coco(str(tmp_path / "coco.json"), os.path.join(BCCD, "JPEGImages"))
    with open(tmp_path / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"file_name": row["image"], "objects": row["objects"]}) + "\n")
    from_folder = read_image_folder(str(tmp_path))
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": {
                "bbox": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
                "category": datasets.Sequence(datasets.ClassLabel(names=names)),
            },
        }
    )
    hub = datasets.Dataset.from_dict(
        {
            "image": [row["image"] for row in rows],
            "objects": [
                {"bbox": row["objects"]["bbox"], "category": [names.index(n) for n in row["objects"]["category"]]}
                for row in rows
            ],
        },
        features=features,
    )
    from_hub = read_hub_split(hub, "cppe-like", "train")
    for read in (from_coco, from_folder, from_hub):
        checked, _ = check_boxes(read, "format")
        assert [row["objects"] for row in checked] == [row["objects"] for row in rows]
        assert [(row["width"], row["height"]) for row in checked] == [(640, 480)] * 3


def rf_detr_source():
    """transformers' image_processing_rf_detr.py run without torchvision: its torchvision import replaced, so that
    its annotation and post-processing functions run as written (its image resize is torchvision's, which for a
    float tensor is torch's bilinear ``interpolate`` without antialiasing, as called here)."""
    import transformers.models.rf_detr as package

    path = os.path.join(os.path.dirname(package.__file__), "image_processing_rf_detr.py")
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    source = source.replace("from torchvision.transforms.v2 import functional as tvF", "tvF = None")
    source = source.replace(
        "from ...image_processing_backends import TorchvisionBackend", "TorchvisionBackend = object"
    )
    source = re.sub(r"^\s*@auto_docstring\s*$", "", source.replace("from ...", "from transformers."), flags=re.M)
    namespace = {"__name__": "rf_detr_source"}
    exec(compile(source, path, "exec"), namespace)
    return namespace


def test_rf_detr_processor_in_torch_matches_transformers_source_steps():
    source = rf_detr_source()
    reference = object.__new__(source["RfDetrImageProcessor"])
    processor = RfDetrImageProcessorTorch(size={"shortest_edge": 56, "longest_edge": 84})
    images = [
        np.asarray(Image.open(os.path.join(BCCD, "JPEGImages", f"BloodImage_0000{i}.jpg")).convert("RGB"))
        for i in (1, 3)
    ]
    images[1] = images[1][:300, :200]  # another aspect ratio: padded in the batch
    annotations = [
        {
            "image_id": 7,
            "annotations": [
                {"bbox": [10, 20, 100, 50], "category_id": 1, "area": 5000, "iscrowd": 0},
                {"bbox": [600, 400, 100, 100], "category_id": 2, "area": 1e4, "iscrowd": 0},
            ],
        },
        {
            "image_id": 8,
            "annotations": [
                {"bbox": [5, 5, 0, 10], "category_id": 0, "area": 0, "iscrowd": 0},
                {"bbox": [50, 60, 70, 80], "category_id": 0, "area": 5600, "iscrowd": 0},
            ],
        },
    ]
    ours = processor(images=images, annotations=annotations)
    expected_images, expected_targets = [], []
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for image, annotation in zip(images, annotations):
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float()
        target = source["prepare_coco_detection_annotation"](tensor, annotation)
        tensor = tensor * (1 / 255)
        size = source["get_size_with_aspect_ratio"](tensor.shape[-2:], 56, 84)
        resized = torch.nn.functional.interpolate(
            tensor[None], size=size, mode="bilinear", align_corners=False, antialias=False
        )[0]
        target = reference.resize_annotation(target, orig_size=tensor.shape[-2:], target_size=resized.shape[-2:])
        resized = (resized - mean) / std
        expected_targets.append(reference.normalize_annotation(target, resized.shape[-2:]))
        expected_images.append(resized)
    height, width = max(i.shape[-2] for i in expected_images), max(i.shape[-1] for i in expected_images)
    for index, (image, target) in enumerate(zip(expected_images, expected_targets)):
        padded = torch.zeros((3, height, width))
        padded[:, : image.shape[-2], : image.shape[-1]] = image
        padding = [0, 0, width - image.shape[-1], height - image.shape[-2]]
        target = reference._update_annotation_for_padded_image(
            target, image.shape[-2:], (height, width), padding, True
        )
        assert torch.equal(ours["pixel_values"][index], padded)
        assert int(ours["pixel_mask"][index].sum()) == image.shape[-2] * image.shape[-1]
        for key in ("boxes", "class_labels", "area", "image_id", "orig_size", "iscrowd"):
            assert torch.allclose(ours["labels"][index][key].float(), target[key].float(), atol=1e-6), key
        assert tuple(ours["labels"][index]["size"].tolist()) == tuple(target["size"])
    # Post-processing: the top-k (query, class) pairs by sigmoid score, boxes in pixels.
    torch.manual_seed(0)
    outputs = transformers.utils.ModelOutput(logits=torch.randn(2, 7, 3), pred_boxes=torch.rand(2, 7, 4) * 0.5 + 0.25)
    sizes = torch.tensor([[480, 640], [300, 200]])
    for threshold, top_k in ((0.5, None), (0.1, 5)):
        mine = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes, top_k=top_k)
        theirs = reference.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes, top_k=top_k)
        for a, b in zip(mine, theirs):
            assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_mean_average_precision_of_perfect_and_missing_detections():
    rows = [
        {
            "image_id": 0,
            "width": 100,
            "height": 100,
            "objects": {"bbox": [[10, 10, 20, 20], [50, 50, 30, 30]], "category": [0, 1]},
        },
        {"image_id": 1, "width": 100, "height": 100, "objects": {"bbox": [[5, 5, 40, 40]], "category": [0]}},
    ]
    detections = np.full((2, 4, 7), -1.0)
    detections[:, :, 0] = [[0], [1]]
    detections[0, 0, 1:] = [10, 10, 30, 30, 0.9, 0]
    detections[1, 0, 1:] = [5, 5, 45, 45, 0.8, 0]
    metrics = mean_average_precision(detections, rows, {0: "a", 1: "b", 2: "c"})
    # Class a found perfectly (AP 1), class b missed (AP 0), class c absent from the references (-1, left out).
    assert (metrics["map_a"], metrics["map_b"], metrics["map_c"]) == (1.0, 0.0, -1.0)
    assert metrics["map"] == metrics["map_50"] == metrics["map_75"] == 0.5
    # A row the Trainer repeats to even out the ranks' batches counts once.
    repeated = np.concatenate([detections, detections[:1]])
    assert mean_average_precision(repeated, rows, {0: "a", 1: "b", 2: "c"}) == metrics


def test_two_gloo_ranks_evaluate_as_one_process(tiny_rf_detr, tmp_path):
    recipe = os.path.join(RECIPES_DIR, "object_detection.py")
    common = [
        "--model_name_or_path", tiny_rf_detr, "--validation_dir", BCCD, "--max_eval_samples", "5",
        "--per_device_eval_batch_size", "2", "--do_eval", *QUIET,
    ]  # fmt: skip
    run_recipe("object_detection", [*common, "--output_dir", str(tmp_path / "one")])
    result = accelerate_launch(recipe, *common, "--output_dir", tmp_path / "two")
    assert "distributed: distributed" in result.stdout + result.stderr
    one, two = (
        read_json(str(tmp_path / "one"), "all_results.json"),
        read_json(str(tmp_path / "two"), "all_results.json"),
    )
    assert two["eval_samples"] == one["eval_samples"] == 5
    # The scores of the gathered detections; the loss is a mean over batches, which the ranks split differently.
    for key in EVAL_KEYS - {"eval_samples", "eval_loss"}:
        assert two[key] == pytest.approx(one[key], abs=1e-9), key


def test_the_recipe_module_names_its_steps():
    assert callable(object_detection.main) and object_detection.FROZEN_STAGE_PREFIXES == (
        "embedder.",
        "encoder.stages.0.",
    )


def coco_file(path, rows: list[dict]) -> str:
    """The rows (of ``check_boxes``) as a COCO detection file, the images named by their paths."""
    names = sorted({name for row in rows for name in row["objects"]["category"]})
    annotations = [
        {"image_id": index, "bbox": box, "category_id": names.index(name), "iscrowd": 0}
        for index, row in enumerate(rows)
        for box, name in zip(row["objects"]["bbox"], row["objects"]["category"])
    ]
    coco = {
        "images": [{"id": i, "file_name": row["image"], "width": 640, "height": 480} for i, row in enumerate(rows)],
        "annotations": [{"id": i + 1, **annotation} for i, annotation in enumerate(annotations)],
        "categories": [{"id": index, "name": name} for index, name in enumerate(names)],
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(coco, handle)
    return str(path)


def test_coco_files_train_a_checkpoint_of_another_label_set_with_ignore_mismatched_sizes(tmp_path):
    model = save_tiny_rf_detr(str(tmp_path / "model"))
    config = read_json(model, "config.json")
    config["id2label"] = {str(i): f"class{i}" for i in range(5)}
    config["label2id"] = {f"class{i}": i for i in range(5)}
    with open(os.path.join(model, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)  # 5 classes, whose heads do not fit BCCD's 3
    rows, _ = check_boxes(read_voc(BCCD, "train")[:6], "bccd train")
    train, validation = coco_file(tmp_path / "train.json", rows[:4]), coco_file(tmp_path / "val.json", rows[4:])
    args = ["--model_name_or_path", model, "--train_file", train, "--validation_file", validation, *QUIET]
    with pytest.raises(ValueError, match="detects 5 classes .* Pass --ignore_mismatched_sizes"):
        run_recipe("object_detection", [*args, "--output_dir", str(tmp_path / "refused")])
    run_recipe(
        "object_detection",
        [*args, "--ignore_mismatched_sizes", "--max_steps", "2", "--output_dir", str(tmp_path / "out")],
    )
    assert read_json(str(tmp_path / "out"), "config.json")["id2label"] == {"0": "Platelets", "1": "RBC", "2": "WBC"}
    assert read_json(str(tmp_path / "out"), "all_results.json")["eval_samples"] == 2


def test_an_image_size_the_windows_cannot_split_is_refused(tiny_rf_detr, tmp_path):
    with pytest.raises(ValueError, match="give an --image_size that is a multiple of 28"):
        run_recipe("object_detection", bccd_args(tiny_rf_detr, tmp_path, "--image_size", "70", "--max_steps", "1"))


def test_training_augmentation_moves_boxes_with_the_image_and_is_seeded():
    rows = bccd_rows(2)
    objects = [
        {"bbox": r["objects"]["bbox"], "category": [CLASSES.index(c) for c in r["objects"]["category"]]} for r in rows
    ]
    batch = {"image": [row["image"] for row in rows], "image_id": [0, 1], "objects": objects}
    processor = RfDetrImageProcessorTorch(size={"height": 56, "width": 56})

    def draw(seed):
        transform = object_detection.DetectionTransform(processor, train=True, seed=seed)
        return [transform(batch) for _ in range(4)]

    first, again = draw(0), draw(0)
    for one, two in zip(first, again):
        assert all(torch.equal(a, b) for a, b in zip(one["pixel_values"], two["pixel_values"]))
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(one["labels"], two["labels"]))
    boxes = [label["boxes"] for draw_ in first for label in draw_["labels"]]
    assert all(((box >= 0) & (box <= 1)).all() for box in boxes)  # normalized centre boxes, inside the image
    evaluation = object_detection.DetectionTransform(processor, train=False)(batch)
    assert [len(label["boxes"]) for label in evaluation["labels"]] == [len(row["objects"]["bbox"]) for row in rows]
