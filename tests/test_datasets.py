import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

from sunet_deploy.data import (
    CityscapesSegmentation,
    DatasetError,
    DatasetSpec,
    FolderSegmentation,
    SBDSegmentation,
    SyntheticSegmentation,
    VOCAugSegmentation,
    VOCSegmentation,
    trainaug_ids,
    validation_spec,
)
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.pipeline.palettes import save_palette_png, voc_palette

H, W = 6, 8


def write_image(path: Path, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def voc_label(value: int) -> np.ndarray:
    label = np.full((H, W), value, np.uint8)
    label[0, :] = 255  # VOC-style border
    label[2:4, 2:5] = 0
    return label


def write_split(path: Path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def make_voc(root: Path, train=("a", "b"), val=("c",)) -> dict[str, np.ndarray]:
    labels = {}
    for n, i in enumerate([*train, *val]):
        write_image(root / "JPEGImages" / f"{i}.jpg", n)
        labels[i] = voc_label(n + 1)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        save_palette_png(root / "SegmentationClass" / f"{i}.png", labels[i], voc_palette(21))
    write_split(root / "ImageSets" / "Segmentation" / "train.txt", train)
    write_split(root / "ImageSets" / "Segmentation" / "val.txt", val)
    return labels


def make_sbd(root: Path, train=("b", "d"), val=("c", "e")) -> dict[str, np.ndarray]:
    labels = {}
    (root / "dataset" / "cls").mkdir(parents=True)
    for n, i in enumerate([*train, *val]):
        write_image(root / "dataset" / "img" / f"{i}.jpg", n)
        labels[i] = np.full((H, W), 10 + n, np.uint8)
        labels[i][1, 1] = 0
        scipy.io.savemat(root / "dataset" / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": labels[i]}})
    write_split(root / "dataset" / "train.txt", train)
    write_split(root / "dataset" / "val.txt", val)
    return labels


def test_voc_reads_palette_labels_as_indices(tmp_path):
    labels = make_voc(tmp_path)
    ds = VOCSegmentation(tmp_path, "train")
    assert len(ds) == 2 and ds.name(1) == "b" and len(ds.classes) == 21 and ds.palette.shape == (21, 3)
    image, label = ds[1]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, labels["b"])  # 255 border and indices exactly
    assert len(VOCSegmentation(tmp_path, "val")) == 1


def test_sbd_mat_labels_keep_their_values(tmp_path):
    labels = make_sbd(tmp_path)
    ds = SBDSegmentation(tmp_path, "val")
    assert [ds.name(i) for i in range(len(ds))] == ["c", "e"]
    np.testing.assert_array_equal(ds[1][1], labels["e"])
    assert ds[1][1].dtype == np.uint8 and set(np.unique(ds[1][1])) == {0, 13}


def test_trainaug_union_prefers_voc_labels(tmp_path):
    voc = make_voc(tmp_path / "voc")
    sbd = make_sbd(tmp_path / "sbd")
    # SBD train+val {b,d,c,e} + VOC train {a,b} - VOC val {c}
    assert trainaug_ids(tmp_path / "voc", tmp_path / "sbd") == ["a", "b", "d", "e"]
    ds = DatasetSpec("voc_aug", str(tmp_path / "voc"), sbd_root=str(tmp_path / "sbd")).build()
    assert isinstance(ds, VOCAugSegmentation) and [ds.name(i) for i in range(4)] == ["a", "b", "d", "e"]
    np.testing.assert_array_equal(ds[1][1], voc["b"])
    np.testing.assert_array_equal(ds[2][1], sbd["d"])


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    city = "aachen"
    stem = f"{city}_000000_000019"
    write_image(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
    ids = np.zeros((H, W), np.uint8)
    ids[0, :4] = [7, 26, 0, 33]
    ids[1, :4] = [24, 1, 11, 23]
    (tmp_path / "gtFine" / "val" / city).mkdir(parents=True)
    Image.fromarray(ids).save(tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
    ds = CityscapesSegmentation(tmp_path, "val")
    assert ds.name(0) == stem and len(ds.classes) == 19
    _, label = ds[0]
    assert label[0, :4].tolist() == [0, 13, 255, 18]  # road, car, unlabeled, bicycle
    assert label[1, :4].tolist() == [11, 255, 2, 10]  # person, ego vehicle, building, sky
    ids[2, 2] = 40
    Image.fromarray(ids).save(tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
    with pytest.raises(DatasetError, match=r"labelIds\.png.*\[40\]"):
        ds[0]


def test_folder_dataset(tmp_path):
    rgb = write_image(tmp_path / "images" / "x1.png")
    mask = np.full((H, W), 2, np.uint8)
    mask[0, 0] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "x1.png")
    ds = FolderSegmentation(tmp_path, num_classes=3, classes=["bg", "a", "b"])
    assert isinstance(ds, FolderSegmentation) and ds.classes == ["bg", "a", "b"] and ds.name(0) == "x1"
    image, label = ds[0]
    np.testing.assert_array_equal(image, rgb)
    np.testing.assert_array_equal(label, mask)


def test_folder_dataset_reads_its_class_names_from_classes_txt(tmp_path):
    write_image(tmp_path / "images" / "x1.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "masks" / "x1.png")
    (tmp_path / "classes.txt").write_text("sky\npotted plant\n\ncar\n")
    for ds in (FolderSegmentation(tmp_path), DatasetSpec("folder", str(tmp_path), num_classes=3).build()):
        assert ds.classes == ["sky", "potted plant", "car"] and ds.palette.shape == (3, 3)
    with pytest.raises(DatasetError, match=r"classes\.txt: 3 classes, but num_classes is 4"):
        FolderSegmentation(tmp_path, num_classes=4)
    (tmp_path / "classes.txt").unlink()
    assert FolderSegmentation(tmp_path, num_classes=2).classes == ["class0", "class1"]
    with pytest.raises(DatasetError, match="has no classes.txt: give its number of classes"):
        FolderSegmentation(tmp_path)


def test_label_values_out_of_range_name_file_and_values(tmp_path):
    write_image(tmp_path / "images" / "x1.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.array([[0, 5], [7, 255]], np.uint8)).resize((W, H), Image.NEAREST).save(tmp_path / "masks" / "x1.png")
    with pytest.raises(DatasetError, match=r"x1\.png.*\[5, 7\]"):
        FolderSegmentation(tmp_path, num_classes=3)[0]


def test_construction_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="VOC root not found.*nowhere"):
        VOCSegmentation(tmp_path / "nowhere")
    make_voc(tmp_path / "voc")
    with pytest.raises(DatasetError, match="split file not found.*test.txt"):
        VOCSegmentation(tmp_path / "voc", "test")
    (tmp_path / "voc" / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(DatasetError, match="1 label file.*b.png"):
        VOCSegmentation(tmp_path / "voc", "train")
    write_split(tmp_path / "voc" / "ImageSets" / "Segmentation" / "empty.txt", [])
    with pytest.raises(DatasetError, match="no samples"):
        VOCSegmentation(tmp_path / "voc", "empty")
    with pytest.raises(DatasetError, match="split folder.*train"):
        CityscapesSegmentation(tmp_path)
    write_image(tmp_path / "f" / "images" / "only_image.jpg")
    (tmp_path / "f" / "masks").mkdir()
    with pytest.raises(DatasetError, match="only_image.png"):
        FolderSegmentation(tmp_path / "f", num_classes=2)
    write_image(tmp_path / "f" / "images" / "only_image.png")
    with pytest.raises(DatasetError, match=r"share the stem.*only_image"):
        FolderSegmentation(tmp_path / "f", num_classes=2)
    with pytest.raises(DatasetError, match="needs root"):
        DatasetSpec("voc", split="val")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        DatasetSpec("imagenet", str(tmp_path))


def test_bad_sbd_mat_and_size_mismatch(tmp_path):
    make_sbd(tmp_path)
    scipy.io.savemat(tmp_path / "dataset" / "cls" / "b.mat", {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"b\.mat.*GTcls"):
        SBDSegmentation(tmp_path, "train")[0]
    scipy.io.savemat(tmp_path / "dataset" / "cls" / "b.mat", {"GTcls": {"Segmentation": np.zeros((3, 3), np.uint8)}})
    with pytest.raises(DatasetError, match="differs from image size"):
        SBDSegmentation(tmp_path, "train")[0]


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_index_and_split():
    ds = SyntheticSegmentation(20, size=(64, 80), seed=3)
    image, label = ds[7]
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    assert label.shape == (64, 80) and label.dtype == np.uint8
    again = SyntheticSegmentation(20, size=(64, 80), seed=3)
    np.testing.assert_array_equal(again[7][0], image)  # no other sample generated first
    np.testing.assert_array_equal(again[7][1], label)
    assert not np.array_equal(SyntheticSegmentation(20, (64, 80), seed=4)[7][0], image)
    val = SyntheticSegmentation(20, size=(64, 80), seed=3, split="val")
    assert not np.array_equal(val[7][0], image)
    assert ds.name(7) != val.name(7)
    with pytest.raises(IndexError):
        ds[20]


def test_synthetic_classes_present_and_balanced():
    ds = SyntheticSegmentation(num_samples=60, size=(64, 64))
    assert ds.classes[0] == "background" and len(ds.classes) == 7 and ds.palette.shape == (7, 3)
    counts = np.zeros(7)
    per_image_classes = []
    for i in range(len(ds)):
        label = ds[i][1]
        counts += np.bincount(label.ravel(), minlength=7)
        per_image_classes.append(len(np.unique(label)))
    share = counts[1:] / counts[1:].sum()
    assert label.max() < 7
    assert share.min() > 0.07 and share.max() < 0.3  # every object class gets a fair share
    assert 0.4 < counts[0] / counts.sum() < 0.9
    assert np.mean(per_image_classes) > 2.5


def test_synthetic_argument_errors():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSegmentation(num_classes=9)
    with pytest.raises(ValueError, match="split"):
        SyntheticSegmentation(split="holdout")


# ---------------------------------------------------------------- dataset specs

SYNTHETIC_VAL = DatasetSpec("synthetic", split="val", num_samples=3, size=(40, 48), num_classes=5, seed=4)


def test_spec_round_trips_through_json_and_builds_its_dataset(tmp_path):
    make_voc(tmp_path / "voc")
    for spec in (SYNTHETIC_VAL, DatasetSpec("voc", str(tmp_path / "voc"), "val"), DatasetSpec("folder", "f", num_classes=3)):
        assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        assert "\n" not in spec.describe() and spec.kind in spec.describe()
    assert SYNTHETIC_VAL.to_dict() == {"kind": "synthetic", "split": "val", "num_samples": 3, "size": [40, 48],
                                       "num_classes": 5, "seed": 4}  # fmt: skip
    built = SYNTHETIC_VAL.build()
    np.testing.assert_array_equal(built[2][0], SyntheticSegmentation(3, (40, 48), 5, seed=4, split="val")[2][0])
    voc = DatasetSpec("voc", str(tmp_path / "voc"), "val").build()
    assert isinstance(voc, VOCSegmentation) and len(voc) == 1


@pytest.mark.parametrize("data, message", [
    ({"kind": "synthetic", "split": "val", "num_samples": 3, "size": [4, 4], "num_classes": 5, "seed": 0, "colour": 1},
     r"unknown keys \['colour'\]"),
    ({"split": "val"}, "without a kind"),
    ({"kind": "imagenet", "root": "x"}, "unknown dataset kind 'imagenet'"),
    ({"kind": "voc", "split": "val"}, "'voc' needs root"),
    ({"kind": "synthetic", "split": "val", "num_samples": 3, "size": [4, 4], "num_classes": 5}, "needs seed"),
    ({"kind": "folder", "root": "x", "split": "val"}, "'folder' takes no split"),
    ({"kind": "voc", "root": "x", "split": "val", "seed": 1}, "takes no seed"),
    ({"kind": "synthetic", "split": "val", "num_samples": "3", "size": [4, 4], "num_classes": 5, "seed": 0},
     "num_samples must be of type int"),
    ({"kind": "synthetic", "split": "val", "num_samples": 3, "size": [4], "num_classes": 5, "seed": 0}, "size must be"),
])  # fmt: skip
def test_spec_from_dict_rejects_what_it_cannot_build(data, message):
    with pytest.raises(DatasetError, match=message):
        DatasetSpec.from_dict(data)


def test_validation_spec_reads_what_training_recorded():
    def meta(training: dict) -> ModelMetadata:
        return ModelMetadata(model={"num_classes": 2}, classes=["a", "b"], palette=[[0, 0, 0], [1, 1, 1]], training=training)

    train = DatasetSpec("folder", "train_folder", num_classes=2)
    recorded = {"dataset": {"train": train.to_dict(), "val": SYNTHETIC_VAL.to_dict()}}
    assert validation_spec(meta(recorded)) == SYNTHETIC_VAL
    assert validation_spec(meta({"dataset": "synthetic"})) is None  # checkpoints from before the record
    assert validation_spec(meta({})) is None
