"""``render``: neural rendering and reconstruction.

render nerf {train,eval,render} ...
render splat {train,eval,video} ...
render dream "a red cube" ...
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from render.gaussians.cli import COMMANDS as SPLAT
    from render.nerf.cli import COMMANDS as NERF

    families = {"nerf": NERF, "splat": SPLAT}
    if argv[:1] == ["dream"]:
        from render.dreamer.cli import main as dream

        return _run("render dream", dream, argv[1:])
    if len(argv) < 2 or argv[0] not in families or argv[1] not in families[argv[0]]:
        usage = "; ".join(f"render {f} {{{','.join(c)}}}" for f, c in families.items())
        print(f'usage: {usage}; render dream "PROMPT" [--help]', file=sys.stderr)
        sys.exit(0 if argv[-1:] in (["-h"], ["--help"]) else 2)
    return _run(f"render {argv[0]} {argv[1]}", families[argv[0]][argv[1]], argv[2:])


def _run(name: str, command, args: list[str]) -> None:
    from render.datasets.readers import DatasetError  # noqa: F401  (a ValueError)
    from worldline.config import ConfigError
    from worldline.runtime import retain_freed_memory

    retain_freed_memory()  # CPU training allocates and frees many MB-sized temporaries per step
    try:
        command(args)
    except (ValueError, OSError, ImportError, ConfigError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
