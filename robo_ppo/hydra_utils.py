"""Where the Hydra config tree lives, and running a Hydra app from a console script."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """Absolute path of the ``conf/`` tree.

    A source checkout (``pip install -e .``) uses ``<repo>/conf``; a wheel
    install carries the same files as package data in ``robo_ppo/conf``
    (pyproject.toml maps them). The checkout's tree counts only next to its
    pyproject.toml, so a stray ``conf/`` in site-packages is never picked up.
    """
    here = Path(__file__).resolve().parent
    candidates = [here / "conf"]
    if (here.parent / "pyproject.toml").is_file():  # a source checkout: its conf/ comes first
        candidates.insert(0, here.parent / "conf")
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"robo_ppo config tree not found next to {here}")


def run_group(env_name: str, resume: str | None) -> str:
    """First level of the run directory: the task name, or ``resumed/<run>``
    for a resumed run (whose task comes from its checkpoint, not this command)."""
    if resume:
        p = Path(resume)
        name = p.parent.parent.name + "_" + p.stem if p.suffix == ".pt" else p.name
        return f"resumed/{name}"
    return env_name


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_group"):
        OmegaConf.register_new_resolver("run_group", run_group)


def run_app(task, config_name: str) -> None:
    """Run ``task(cfg)`` as a Hydra app on ``conf/<config_name>.yaml`` (the
    console scripts' ``main``; their schemas must be registered first)."""
    import hydra

    register_resolvers()
    hydra.main(version_base=None, config_path=config_dir(), config_name=config_name)(task)()
