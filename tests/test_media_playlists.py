"""Playlists and file lists are refused at probe time: an upload named .mp4 that is really an
HLS playlist or an ffconcat list would otherwise make ffmpeg read other local files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ffmpeg

from affectlens.tools import media
from affectlens.tools.media import PlaylistRejected, load, probe


@pytest.fixture(scope="module")
def hls(tmp_path_factory, face_clip: Path) -> Path:
    """A real HLS playlist (and its .ts segments) cut by ffmpeg from the face clip."""
    d = tmp_path_factory.mktemp("hls")
    playlist = d / "clip.m3u8"
    ffmpeg(
        "-i",
        face_clip,
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_playlist_type",
        "vod",
        playlist,
    )
    assert playlist.read_text().startswith("#EXTM3U") and list(d.glob("*.ts"))
    return playlist


def _concat_list(folder: Path, face_clip: Path) -> Path:
    """An ffconcat list named .mp4 that points at a local file beside it (relative, so
    ffmpeg's default 'safe' mode would follow it)."""
    shutil.copy(face_clip, folder / "secret.mp4")
    upload = folder / "upload.mp4"
    upload.write_text("ffconcat version 1.0\nfile 'secret.mp4'\n")
    return upload


def test_hls_playlist_is_refused(hls: Path, settings) -> None:
    renamed = hls.with_name("upload.mp4")
    shutil.copy(hls, renamed)
    for path in (hls, renamed):
        with pytest.raises(PlaylistRejected, match="playlist"):
            probe(path, settings)
        with pytest.raises(PlaylistRejected):
            load(path, settings)


def test_concat_list_renamed_mp4_is_refused(tmp_path: Path, face_clip: Path, settings) -> None:
    upload = _concat_list(tmp_path, face_clip)
    for header in ("ffconcat version 1.0\n", "\ufeff", ""):  # with BOM, without header
        upload.write_text(header + "file 'secret.mp4'\n")
        with pytest.raises(PlaylistRejected):
            probe(upload, settings)


def test_demuxer_whitelist_refuses_playlists_the_sniffer_misses(
    hls: Path, tmp_path: Path, face_clip: Path, settings, monkeypatch
) -> None:
    """Second layer: with the first-bytes check disabled, ffprobe's -format_whitelist refuses
    the hls and concat demuxers by itself."""
    monkeypatch.setattr(media, "_reject_playlist", lambda path: None)
    for path in (hls, _concat_list(tmp_path, face_clip)):
        with pytest.raises(PlaylistRejected, match="not one AffectLens accepts"):
            probe(path, settings)


def test_ordinary_media_still_probes(
    test_data: Path, face_clip: Path, face_image: Path, speech_en_wav: Path, settings
) -> None:
    paths = [
        face_clip,
        face_image,
        speech_en_wav,
        next((test_data / "cremad").glob("*.flv")),
        next((test_data / "cremad").glob("*.mp3")),
    ]
    for path in paths:
        assert media._allowed(probe(path, settings).container), path
