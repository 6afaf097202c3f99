"""chromadb shared by two real processes on one data directory (`affectlens ui` running while
`affectlens analyze` stores results): writes are serialised by a file lock, and a long-lived
process sees what another wrote instead of serving (and later persisting) a stale index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.schemas import AnalysisResult, EmotionReading  # noqa: E402
from affectlens.settings import Settings  # noqa: E402
from affectlens.tools.evidence import MediaInfo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKER = """
import sys, time
from pathlib import Path
from affectlens.settings import Settings
from affectlens.agent.knowledge import index_analysis
from affectlens.agent.schemas import AnalysisResult, EmotionReading
from affectlens.tools.evidence import MediaInfo
data, tag, n, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
s = Settings(data_dir=data)
while not go.exists():
    time.sleep(0.01)
for i in range(n):
    index_analysis(AnalysisResult(
        id=f"{tag}-{i}", media=MediaInfo(file_name=f"{tag}{i}.mp4", size_bytes=1),
        reading=EmotionReading(dominant="happiness", label=f"happily {tag} {i}",
                               explanation=[f"Sentence {i} from process {tag}."])), s)
"""


def _result(tag: str, i: int) -> AnalysisResult:
    return AnalysisResult(
        id=f"{tag}-{i}",
        media=MediaInfo(file_name=f"{tag}{i}.mp4", size_bytes=1),
        reading=EmotionReading(
            dominant="sadness",
            label=f"sadly {tag} {i}",
            explanation=[f"Sentence {i} from process {tag}."],
        ),
    )


def _spawn(data: Path, tag: str, n: int, go: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(data), tag, str(n), str(go)],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # MiniLM in three processes
def test_two_writers_and_a_long_lived_reader(tmp_path):
    from affectlens.agent.knowledge import ANALYSES, _collection, index_analysis, similar_analyses

    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    index_analysis(_result("ui", 0), settings)  # this process is the running UI
    assert [h[0] for h in similar_analyses("sadly ui 0", settings, k=5)] == ["ui-0"]

    go = tmp_path / "go"
    procs = [_spawn(data, tag, 8, go) for tag in ("cli1", "cli2")]
    go.touch()  # both write at once
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]

    # the long-lived process sees every entry the others wrote, in its vector index too
    hits = {h[0] for h in similar_analyses("happily", settings, k=40)}
    want = {"ui-0"} | {f"{t}-{i}" for t in ("cli1", "cli2") for i in range(8)}
    assert hits == want
    index_analysis(_result("ui", 1), settings)  # and its next write keeps theirs
    assert len({h[0] for h in similar_analyses("happily", settings, k=40)}) == 18

    # a fresh process reads all of them back
    check = (
        "import sys; from affectlens.settings import Settings; "
        "from affectlens.agent.knowledge import similar_analyses as s; "
        "print(len(s('happily', Settings(data_dir=sys.argv[1]), k=40)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check, str(data)],
        cwd=REPO,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=300,
    )
    assert out.stdout.strip().splitlines()[-1] == "18", out.stderr[-2000:]
    assert _collection(settings, ANALYSES).count() == 18
