"""Face detection, FER-style crops and the image pipeline, on real photos (scikit-image's)."""
import numpy as np
import pytest
from PIL import Image
from skimage import data

from emotion_app import classify
from emotion_app.app.image import draw_faces
from emotion_app.core.labels import LABELS
from emotion_app.media.faces import CROP_SIZE, detect_faces, main_faces
from emotion_app.pipelines.image import classify_crops

from .conftest import DATA, needs_data


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


def save(array, path):
    Image.fromarray(array).save(path)
    return str(path)


def test_finds_the_astronauts_face_with_a_level_fer_crop(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    # Her face spans roughly x 180-270, y 60-175 in the 512x512 photo.
    assert 160 < x1 < 200 and 250 < x2 < 290 and 40 < y1 < 90 and 150 < y2 < 200
    assert face.confidence > 0.95 and face.landmarks.shape == (5, 2)
    assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and face.crop.dtype == np.uint8


def test_two_faces_side_by_side_are_both_found_largest_first(astronaut):
    face = astronaut[20:260, 120:330]
    smaller = np.asarray(Image.fromarray(face).resize((168, 192)))
    canvas = np.zeros((240, 420, 3), np.uint8)
    canvas[:, :210], canvas[24:216, 230:398] = face, smaller
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].box[0] < 210 <= faces[1].box[0]  # the larger (left) face comes first


def test_photo_result_has_every_face_and_the_main_face_on_top(tmp_path, astronaut):
    result = classify("image", [save(astronaut, tmp_path / "astronaut.png")])[0]
    assert result["face_detected"] is True and len(result["faces"]) == 1
    assert result["label"] == result["faces"][0]["label"] and result["label"] in LABELS
    assert abs(sum(result["probs"].values()) - 1) < 1e-3
    assert result["model"].startswith("image-ensemble@")


def test_image_without_a_face_is_classified_whole_and_flagged(tmp_path):
    result = classify("image", [save(data.coffee(), tmp_path / "coffee.jpg")])[0]
    assert result["face_detected"] is False and result["faces"] == []
    assert result["label"] in LABELS and "whole image" in result["notes"][0]


def test_small_gray_face_crop_is_used_as_it_is(tmp_path, astronaut):
    """External evaluation feeds ready-made 48x48 gray crops (FER-2013 style)."""
    crop = np.asarray(Image.fromarray(detect_faces(astronaut)[0].crop).convert("L").resize((48, 48)))
    result = classify("image", [save(crop, tmp_path / "crop.png")])[0]
    assert result["label"] in LABELS and "error" not in result
    assert "face crop" in result["notes"][0]  # classified whole, and the result says so
    assert np.allclose(list(result["probs"].values()), classify_crops([crop])[0], atol=1e-5)


def test_bad_files_fail_alone_with_their_name(tmp_path, astronaut):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.touch()
    (tmp_path / "notes.txt").write_text("a text file")
    results = classify("image", [str(corrupt), str(empty), str(tmp_path / "missing.png"), str(tmp_path / "notes.txt"),
                       save(astronaut, tmp_path / "ok.png")])
    assert "corrupt.jpg" in results[0]["error"] and "not a readable image" in results[0]["error"]
    assert "empty.png" in results[1]["error"] and "empty" in results[1]["error"]
    assert "not found" in results[2]["error"]
    assert "unsupported format" in results[3]["error"]
    assert results[4]["label"] in LABELS


def test_draw_faces_marks_the_box(tmp_path, astronaut):
    path = save(astronaut, tmp_path / "a.png")
    result = classify("image", [path])[0]
    drawn = draw_faces(path, result["faces"])
    assert drawn.shape == astronaut.shape
    x1, y1, x2, y2 = (int(v) for v in result["faces"][0]["box"])
    assert (drawn[y1 + 5:y2 - 5, x2] != astronaut[y1 + 5:y2 - 5, x2]).any()  # the box's right edge
    assert (drawn[y1 + 10:y2 - 10, x1 + 10:x2 - 10] == astronaut[y1 + 10:y2 - 10, x1 + 10:x2 - 10]).all()


@needs_data
def test_publictest_sample_is_well_above_chance():
    import csv
    root = DATA / "face" / "fer2013"
    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "publictest"]
    rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), 200, replace=False)]
    crops = [np.asarray(Image.open(root / r["file"])) for r in rows]
    predicted = classify_crops(crops).argmax(1)
    accuracy = np.mean([LABELS[p] == r["label"] for p, r in zip(predicted, rows)])
    assert accuracy > 0.6  # chance is 1/7; the ensemble scores ~0.72 on all of PublicTest


def test_a_16_bit_grayscale_photo_keeps_its_tones_and_its_face(astronaut, tmp_path):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"), dtype=np.uint16) * 257  # the full 16-bit range
    path = tmp_path / "astronaut16.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode == "I;16"
    [result] = classify("image", [str(path)])
    assert result["face_detected"] and result["label"] == "happy"


def test_a_phone_sized_photo_is_shrunk_not_refused(astronaut, tmp_path):
    path = tmp_path / "huge.jpg"
    Image.fromarray(astronaut).resize((8000, 8000)).save(path, quality=80)  # 64 megapixels
    [result] = classify("image", [str(path)])
    assert "error" not in result and result["face_detected"]
    x1, y1, x2, y2 = result["faces"][0]["box"]
    assert x2 - x1 > 600  # boxes are in the shrunk image's pixels (at most 4096 a side)


def test_drawn_boxes_carry_the_face_numbers_of_the_chart(astronaut):
    faces = [{"box": [180, 60, 270, 175], "label": "happy", "probs": dict.fromkeys(LABELS, 0.0) | {"happy": 0.9}},
             {"box": [20, 2, 90, 80], "label": "sad", "probs": dict.fromkeys(LABELS, 0.0) | {"sad": 0.6}}]
    drawn = draw_faces(astronaut, faces)
    label_colour = np.array([255, 200, 0])
    # face 2 sits at the top edge: its label is drawn below its box, not above it under the viewer's badge
    assert (drawn[81:95, 25:60] == label_colour).all(axis=-1).any()
    assert not (drawn[6:14, 30:55] == label_colour).all(axis=-1).all()  # inside the box, where it used to be


def test_images_too_small_for_the_detector_have_no_face_not_an_error(astronaut, tmp_path):
    """MTCNN fails outright on an image whose shorter side (as shrunk for detection) is
    below its smallest face; such an image is read whole, like any faceless one."""
    tiny_face = np.asarray(Image.fromarray(astronaut).resize((19, 19)))
    strip = np.zeros((40, 4096, 3), np.uint8)  # 9 px high once shrunk to 960 px wide
    for image in (tiny_face, np.zeros((13, 13, 3), np.uint8), strip):
        assert detect_faces(image) == []
    assert detect_faces(np.asarray(Image.fromarray(astronaut).resize((30, 30))), min_face_size=40) == []
    assert main_faces([tiny_face, tiny_face]) == [None, None]
    assert main_faces([strip]) == [None]
    for result in classify("image", [save(tiny_face, tmp_path / "face19.png"), save(strip, tmp_path / "strip.png")]):
        assert "error" not in result and not result["face_detected"]


def test_the_face_cascade_runs_every_network_only_on_faces_the_colour_one_is_unsure_of(astronaut):
    from emotion_app.models.ensemble import answered_alone, combine
    from emotion_app.models.registry import create_model
    ensemble = create_model("image-ensemble")
    cascade = ensemble.cascade
    assert cascade and ensemble.members[cascade["first_member"]][0].entry.id == "image-wild-mobilenetv2"
    faces = [face.crop for face in detect_faces(astronaut)] + [data.coffee(), data.camera()]
    members = [model.predict_proba(faces) for model, _ in ensemble.members]
    alone = answered_alone(members[cascade["first_member"]], cascade)
    assert alone.any() and not alone.all()  # the astronaut's smile is sure, the coffee cup is not
    seen = []
    other, weight = ensemble.members[0]
    original = other.predict_proba
    try:
        other.predict_proba = lambda batch: seen.append(len(batch)) or original(batch)
        served = ensemble.predict_proba(faces)
    finally:
        del other.predict_proba
    assert seen == [int((~alone).sum())]
    np.testing.assert_allclose(served, combine(members, [w for _, w in ensemble.members], cascade), atol=1e-6)
    np.testing.assert_allclose(served[alone], members[cascade["first_member"]][alone], atol=1e-6)


@pytest.mark.parametrize("arch", ["mobilenetv2", "efficientnet-lite0"])
def test_each_colour_network_trains_from_imagenet_and_is_served_as_trained(arch, tmp_path):
    """training.face_wild starts from packaged ImageNet weights, and what it trains reaches
    the app's network (the layout export writes) unchanged, and resumes from its own run."""
    import torch
    from safetensors.torch import save_file

    from emotion_app.models.image import build_network, load_in_order
    from emotion_app.train.export import fp16_state, round_to_fp16
    from training.face_wild import WILD_MODELS, imagenet_init, init_weights
    from training.face_wild import build_network as build_training_network

    trained = build_training_network(arch)
    random_stem = next(iter(trained.backbone.parameters())).detach().clone()
    imagenet_init(trained, arch)
    assert not torch.equal(random_stem, next(iter(trained.backbone.parameters())))
    round_to_fp16(trained)  # what is saved is fp16
    served = build_network({"architecture": "timm", "backbone": WILD_MODELS[arch][1], "input_size": 96})
    load_in_order(served, trained.state_dict())
    save_file(fp16_state(trained), str(tmp_path / "model.safetensors"))  # as train saves its best epoch
    resumed = build_training_network(arch)
    init_weights(resumed, tmp_path / "model.safetensors")
    faces = torch.rand(2, 3, 96, 96)
    with torch.inference_mode():
        expected = trained.eval()(faces)
        assert torch.allclose(served.eval()(faces), expected, atol=1e-4)
        assert torch.allclose(resumed.eval()(faces), expected, atol=1e-4)


def test_freezing_blocks_is_refused_for_a_network_without_them(tmp_path, capsys):
    from training.face_wild import main
    with pytest.raises(SystemExit) as stop:
        main(["train", "--arch", "efficientnet-lite0", "--freeze-blocks", "7", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "--freeze-blocks" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_class_weights_lift_rare_classes_by_the_inverse_square_root_and_keep_the_average_example_at_one():
    """Face training weights its loss from a corpus mixture known only by expected counts;
    the same rule as for a list of labels, so rare disgust counts more but not fully balanced."""
    from emotion_app.train.optim import class_weights, weights_from_counts
    counts = np.array([400, 25, 400, 1600, 400, 400, 100], dtype=float)
    w = weights_from_counts(counts)
    assert w[1] / w[3] == pytest.approx(8.0)  # 64x rarer -> 8x the weight
    assert (w * counts).sum() / counts.sum() == pytest.approx(1.0)
    labels = np.repeat(np.arange(7), counts.astype(int))
    assert np.array_equal(class_weights(labels), w)
    assert np.allclose(class_weights(labels, power=1.0) * counts, counts.sum() / 7)  # balanced
