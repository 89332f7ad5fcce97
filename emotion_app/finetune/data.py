"""Fine-tuning data: labelled uploads read, checked row by row, and stored with the job.

An upload is a zip (a CSV manifest with ``path,label`` or ``text,label`` columns, the
CLI's format, an optional ``speaker`` column, or files in folders named by their label),
a CSV, a folder, or an annotation queue's agreed labels. Every row is checked before any training starts: the
label is known, the file is there and decodes in the modality's own pipeline, and each
class keeps enough examples for a stratified held-out split. Every bad row is listed in
one report; the good rows are prepared exactly as prediction prepares its inputs (the
text cleaned, the largest face detected and cropped, the clip cut to its speech). Video
clips are only probed here (a readable video, not too long): their frames and speech are
read in the job, where the work can be watched and cancelled (``clips``).
"""
from __future__ import annotations

import csv
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..core.errors import InputError
from ..core.inputs import elided, markdown_escape
from ..core.labels import LABEL_TO_ID, LABELS, canonical
from ..media.archives import copy_limited, hidden, members, open_zip, read_limited, short_name, text_lines
from ..pipelines.text import MAX_CHARS

MODALITIES = ("text", "image", "audio", "video")
MIN_PER_CLASS = 5  # a class needs one held-out example and a few to learn from
MAX_ROWS = 20_000
MAX_UNZIPPED_MB = 2048
MAX_SPEECH_SECONDS = 30.0  # longer clips should be cut into labelled pieces
MAX_TEXT_MB = 20  # a .txt of texts: 20,000 rows of up to 2,000 characters fit in less
MAX_CLIP_SECONDS = 60.0  # a clip carries one label; longer recordings should be cut into labelled clips
# a report lists the first problems only: an upload of 20,000 stray files has one each, and a
# problem quotes the row's cell (up to csv's 128 KB field limit); the count is always given
MAX_PROBLEMS_LISTED = 50
MAX_PROBLEM_CHARS = 400  # a longer one keeps its start (the row) and end (the reason)


@dataclass(frozen=True)
class Row:
    where: str  # how the report names the row: "manifest.csv line 4", "angry/x.jpg"
    value: str  # the text, or the media file's path
    label: str
    problem: str | None = None  # found while reading, reported in row order
    speaker: str | None = None  # from a manifest's optional speaker column


@dataclass
class ValidationReport:
    """Prepared examples of the usable rows, and every problem found, in row order."""
    modality: str
    examples: list = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    speakers: list[str | None] = field(default_factory=list)  # per example; None where not given
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {LABELS[i]: counts[i] for i in sorted(counts)}

    @property
    def ok(self) -> bool:
        return len(self.counts) >= 2

    def markdown(self) -> str:
        head = (f"**{len(self.labels)} of {self.rows} row(s) usable** for {self.modality}: "
                + (", ".join(f"{k} {v}" for k, v in self.counts.items()) or "none"))
        if not self.ok:
            head += "\n\n⚠️ Nothing to train on: at least two classes with " \
                    f"{MIN_PER_CLASS} or more usable examples each are needed."
        lines = [head]
        missing = [label for label in LABELS if label not in self.counts]
        if self.ok and missing:
            lines.append(f"\nNo usable rows for {', '.join(missing)}: fine-tuning learns nothing new about "
                         f"{'them' if len(missing) > 1 else 'it'}, and the model may predict "
                         f"{'them' if len(missing) > 1 else 'it'} less often afterwards.")
        if self.problems:
            lines += ["", f"**{len(self.problems)} problem(s):**"] + [f"- {markdown_escape(p)}" for p in self.listed]
            if len(self.problems) > len(self.listed):
                lines.append(f"- … and {len(self.problems) - len(self.listed)} more")
        lines += [f"\n_{markdown_escape(n)}_" for n in self.notes]
        return "\n".join(lines)

    @property
    def listed(self) -> list[str]:
        """The problems a report shows: the first MAX_PROBLEMS_LISTED, each cut to about
        MAX_PROBLEM_CHARS, so that its size does not grow with the upload."""
        return [elided(p, MAX_PROBLEM_CHARS) for p in self.problems[:MAX_PROBLEMS_LISTED]]

    def to_json(self) -> dict:
        """The job's record of its check (``report.json``): the count of problems and the
        ones the Markdown report lists (the rest were shown to no one when it was submitted)."""
        return {"modality": self.modality, "rows": self.rows, "usable": len(self.labels), "counts": self.counts,
                "speakers": len({s for s in self.speakers if s is not None}), "problem_count": len(self.problems),
                "problems": self.listed, "notes": self.notes}


# --- reading rows -------------------------------------------------------------------------

def extract_zip(path: Path, into: Path) -> Path:
    """Unpack a zip safely (``media.archives``: no member outside ``into``; file count,
    total size and inflation ratio checked first; sizes counted as they are read)."""
    name = Path(path).name
    with open_zip(path) as archive:
        total = 0
        for m in members(archive, name, MAX_ROWS, MAX_UNZIPPED_MB):
            with _create(into, m.filename, name) as dst:
                try:
                    with archive.open(m) as src:
                        total += copy_limited(src, dst, MAX_UNZIPPED_MB * 1024 * 1024 - total, f"{name}: {m.filename}")
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                    raise InputError(f"{name}: corrupt member {short_name(m.filename)!r} ({exc})") from None
    return into


def _create(into: Path, member: str, name: str):
    """The member's file, opened for writing; a name this filesystem cannot hold (a part
    over 255 bytes, or both a file and a folder of that name) refuses the archive, naming it."""
    target = into.joinpath(*PurePosixPath(member).parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "wb")
    except OSError as exc:
        raise InputError(f"{name}: member {short_name(member)!r} cannot be unpacked ({exc.strerror})") from None


def _manifest_rows(manifest: Path, modality: str, root: Path) -> tuple[list[Row], list[str]]:
    """Rows of a ``path,label`` / ``text,label`` CSV; paths are relative to the CSV."""
    name = manifest.relative_to(root).as_posix() if manifest.is_relative_to(root) else manifest.name
    column = "text" if modality == "text" else "path"
    rows = []
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, strict=True)  # a quote never closed is said, not read as one long cell
            header = reader.fieldnames or []
            if column not in header or "label" not in header:
                return [], [f"{name}: needs '{column}' and 'label' columns, has {', '.join(header) or 'none'}"]
            for record in reader:
                if len(rows) == MAX_ROWS:
                    return rows, [f"{name}: over {MAX_ROWS} rows; only the first {MAX_ROWS} are read"]
                rows.append(_manifest_row(record, f"{name} line {reader.line_num}", column, manifest.parent, root))
    except (UnicodeDecodeError, csv.Error) as exc:
        return rows, [f"{name}: not a readable UTF-8 CSV after {len(rows)} row(s) ({exc})"]
    return rows, []


def _manifest_row(record: dict, where: str, column: str, folder: Path, root: Path) -> Row:
    value, label = (record.get(column) or "").strip(), (record.get("label") or "").strip()
    speaker = (record.get("speaker") or "").strip() or None
    if not label:
        return Row(where, value, label, "no label")
    if not value:
        return Row(where, value, label, f"no {column}")
    if column == "text":
        return Row(where, value, label, speaker=speaker)
    path = (folder / value).resolve()
    if not path.is_relative_to(root.resolve()):
        return Row(where, value, label, f"{value!r} points outside the upload")
    return Row(f"{where} ({value})", str(path), label, speaker=speaker)


def _is_manifest(path: Path, modality: str) -> bool:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error, OSError):
        return False
    return "label" in header and ("text" if modality == "text" else "path") in header


def folder_rows(root: Path, modality: str) -> tuple[list[Row], list[str]]:
    """Rows of an unpacked upload: its CSV manifests if it has any, else its files, each
    labelled by the folder it is in (for text, each line of a .txt file is one row)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not hidden(p.relative_to(root).parts))
    manifests = [p for p in files if p.suffix.lower() == ".csv" and _is_manifest(p, modality)]
    if manifests:
        rows, problems = [], []
        for manifest in manifests:
            r, p = _manifest_rows(manifest, modality, root)
            rows, problems = rows + r, problems + p
        return rows, problems
    rows, problems = [], []
    for path in files:
        where = path.relative_to(root).as_posix()
        if path.parent == root:
            problems.append(f"{where}: not in a folder named by its label, and no CSV manifest names it")
        elif modality == "text":
            if path.suffix.lower() != ".txt":
                problems.append(f"{where}: text uploads in label folders must be .txt files (one text per line)")
                continue
            try:
                with open(path, "rb") as f:
                    data = read_limited(f, MAX_TEXT_MB * 1024 * 1024, where)
                lines = text_lines(data, where, MAX_ROWS - len(rows), MAX_CHARS)
            except InputError as exc:
                problems.append(str(exc))
                continue
            rows += [Row(f"{where} line {i}", text, path.parent.name) for i, text in lines]
        else:
            rows.append(Row(where, str(path), path.parent.name))
    if not rows and not problems:
        problems.append("the upload is empty: give a CSV manifest (path,label or text,label) "
                        "or files in folders named by their label")
    return rows, problems


def upload_rows(path, modality: str, workdir: Path) -> tuple[list[Row], list[str]]:
    """Rows of an uploaded zip (unpacked into ``workdir``), CSV or folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path.name}: file not found")
    if path.is_dir():
        return folder_rows(path, modality)
    if path.suffix.lower() == ".zip":
        return folder_rows(extract_zip(path, workdir), modality)
    if path.suffix.lower() == ".csv":
        return _manifest_rows(path, modality, path.parent)
    raise InputError(f"{path.name}: upload a .zip (manifest or label folders) or a .csv manifest")


def queue_rows(queue: str, modality: str, store=None) -> tuple[list[Row], list[str]]:
    """An annotation queue's agreed labels for this modality (video clips count as audio)."""
    from ..annotation import default_store
    store = store or default_store()
    if queue not in store.queue_names():
        raise InputError(f"no annotation queue named {queue!r}")
    kinds = ("audio", "video") if modality == "audio" else (modality,)
    agreed = store.agreed_items(queue)
    rows = [Row(f"queue {queue} item {item.id}", item.input, label) for item, label in agreed if item.modality in kinds]
    left_out = len(agreed) - len(rows)
    return rows, [f"{left_out} agreed item(s) of other modalities left out"] if left_out else []


# --- preparing inputs as prediction does ---------------------------------------------------

def prepare_text_input(value: str):
    from ..pipelines.text import prepare_text
    return prepare_text(value)[0], None


def prepare_face(path: str):
    """The picture's main face crop (``media.faces.main_face_crop``, as prediction reads
    it) as a 48x48 gray crop."""
    from ..media.faces import main_face_crop
    from ..media.images import load_image
    from ..models.image import to_fer_gray
    crop, faces = main_face_crop(load_image(path))
    note = None if len(faces) == 1 else "several faces: the largest used" if faces else "no face detected: used whole"
    return to_fer_gray(crop), note


def prepare_speech(path: str):
    """The clip at 16 kHz, from its first to its last detected speech."""
    from ..media.audio import load_audio
    from ..media.speech import MIN_SPEECH_SECONDS, speech_spans, speech_stretch
    wave = load_audio(path)
    spans = speech_spans(wave)
    if not spans:
        raise InputError(f"{path}: no speech detected (silence or background noise only)")
    speech = sum(e - s for s, e in spans)
    if speech < MIN_SPEECH_SECONDS:
        raise InputError(f"{path}: only {speech:.2f} s of speech; at least {MIN_SPEECH_SECONDS} s is needed")
    if spans[-1][1] - spans[0][0] > MAX_SPEECH_SECONDS:
        raise InputError(f"{path}: {spans[-1][1] - spans[0][0]:.0f} s of speech, over the {MAX_SPEECH_SECONDS:.0f} s "
                         "limit for a training clip; cut it into labelled pieces")
    return speech_stretch(wave, spans), None


def probe_clip(path: str):
    """A readable video of at most MAX_CLIP_SECONDS; the clip itself is read in the job."""
    from ..media.video import probe
    info = probe(path)
    if info.duration is not None and info.duration > MAX_CLIP_SECONDS:
        raise InputError(f"{path}: {info.duration:.0f} s long, over the {MAX_CLIP_SECONDS:.0f} s limit for a "
                         "training clip; cut it into labelled clips")
    return path, None if info.has_audio else "no audio track: face only"


PREPARE = {"text": prepare_text_input, "image": prepare_face, "audio": prepare_speech, "video": probe_clip}


def check_rows(rows: list[Row], modality: str, progress=None) -> ValidationReport:
    """Check and prepare every row; classes left with too few examples are reported and dropped."""
    if modality not in MODALITIES:
        raise InputError(f"cannot fine-tune {modality!r}; choose one of {', '.join(MODALITIES)}")
    report = ValidationReport(modality, rows=len(rows))
    if len(rows) > MAX_ROWS:
        report.problems.append(f"{len(rows)} rows, over the limit of {MAX_ROWS}: only the first {MAX_ROWS} are read")
        rows = rows[:MAX_ROWS]
    notes, renamed = Counter(), Counter()
    for i, row in enumerate(rows):
        if progress:
            progress(i, len(rows))
        if row.problem:
            report.problems.append(f"{row.where}: {row.problem}")
            continue
        try:
            label = canonical(row.label)
        except ValueError as exc:
            report.problems.append(f"{row.where}: {exc}")
            continue
        if label is None:
            report.problems.append(f"{row.where}: label {row.label!r} has no canonical class; row not used")
            continue
        if row.label.strip().lower() != label:
            renamed[(row.label.strip(), label)] += 1
        try:
            example, note = PREPARE[modality](row.value)
        except InputError as exc:
            message = str(exc).removeprefix(row.value + ": ").replace(row.value, Path(row.value).name)
            report.problems.append(f"{row.where}: {message}")
            continue
        if note:
            notes[note] += 1
        report.examples.append(example)
        report.labels.append(LABEL_TO_ID[label])
        report.speakers.append(row.speaker)
    _drop_small_classes(report)
    report.notes += [f"label '{given}' read as {label}: {n} row(s)" for (given, label), n in renamed.items()]
    report.notes += [f"{n} {'clip' if modality == 'video' else 'image'}(s): {note}" for note, n in notes.items()]
    speakers = {s for s in report.speakers if s is not None}
    if speakers:
        unnamed = report.speakers.count(None)
        report.notes.append(f"{len(speakers)} speaker(s): the held-out part is whole speakers, none of them trained on"
                            + (f"; {unnamed} row(s) without a speaker count as a speaker each" if unnamed else ""))
    return report


def _drop_small_classes(report: ValidationReport) -> None:
    counts = Counter(report.labels)
    small = {c for c, n in counts.items() if n < MIN_PER_CLASS}
    for c in sorted(small):
        report.problems.append(f"class {LABELS[c]}: only {counts[c]} usable example(s), at least {MIN_PER_CLASS} "
                               "are needed; its rows are not used")
    keep = [i for i, y in enumerate(report.labels) if y not in small]
    report.examples = [report.examples[i] for i in keep]
    report.labels = [report.labels[i] for i in keep]
    report.speakers = [report.speakers[i] for i in keep]


# --- storing examples with a job ------------------------------------------------------------

def save_examples(path: Path, examples: list, labels: list[int]) -> None:
    """Texts as one string array, media examples (crops, waves) one array each."""
    arrays = {"labels": np.asarray(labels, dtype=np.int64)}
    if examples and isinstance(examples[0], str):
        arrays["texts"] = np.asarray(examples, dtype=str)
    else:
        arrays.update({f"x{i}": np.ascontiguousarray(x) for i, x in enumerate(examples)})
    np.savez_compressed(path, **arrays)


def load_examples(path: Path) -> tuple[list, np.ndarray]:
    with np.load(path) as z:
        labels = z["labels"]
        examples = [str(t) for t in z["texts"]] if "texts" in z else [z[f"x{i}"] for i in range(len(labels))]
    return examples, labels


def stratified_split(labels, heldout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices, every class on both sides."""
    from sklearn.model_selection import train_test_split
    labels = np.asarray(labels)
    n_held = max(len(set(labels.tolist())), round(heldout * len(labels)))
    return train_test_split(np.arange(len(labels)), test_size=n_held, stratify=labels, random_state=seed)


def speaker_split(labels, speakers, heldout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices with every speaker on one side only (a row without a
    speaker is a speaker of its own), classes balanced across the sides as far as the
    speakers allow; the stratified split when no speaker is named."""
    from sklearn.model_selection import StratifiedGroupKFold
    labels = np.asarray(labels)
    if all(s is None for s in speakers):
        return stratified_split(labels, heldout, seed)
    groups = np.array([s if s is not None else f"\0row{i}" for i, s in enumerate(speakers)])
    folds = max(2, min(round(1 / heldout), len(set(groups.tolist()))))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, held_idx = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return train_idx, held_idx
