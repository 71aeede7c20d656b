"""What a warm remote cache is worth to a second machine. Prints, per recipe, the wall time of
a cold build (empty local cache) with no remote, and of a cold build on a "second machine"
(an empty cache folder of its own) reading a remote that a first machine (CI, write mode)
filled: the remote on a real SFTP server on loopback (Debian's sshd, started here), and on a
file:// folder. Also: the no-op rebuild with a remote set (it must not talk to the remote).

Rounds are interleaved so that load from elsewhere falls on each kind alike.

    python benchmarks/remote_cache.py [--repeat 3] [--recipes digits digits_all] [-- OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from build_speed import TFBUILD, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sftp_server import sftp_server  # noqa: E402 - the same loopback server the tests use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=["digits", "digits_all"])
    parser.add_argument("overrides", nargs="*", help="added to every build")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-remote-") as tmp, sftp_server(Path(tmp) / "sshd") as server:
        os.environ.update(server.env)  # credentials the way a user sets them (FSSPEC_SFTP)
        for recipe in args.recipes:
            remotes = {"sftp": server.url(recipe), "file": f"file://{Path(tmp) / 'file-remote' / recipe}"}
            base = [str(TFBUILD), f"recipe={recipe}", *args.overrides]
            for name, url in remotes.items():  # the first machine fills each remote
                seconds, _ = timed([*base, f"cache.remote={url}", "cache.remote_mode=write"], _fresh(tmp, f"{recipe}-ci-{name}"))
                print(f"{recipe}: CI build filling the {name} remote {seconds:.2f} s", flush=True)
            times: dict[str, list[float]] = {"cold, no remote": [], "cold, sftp remote": [], "cold, file remote": [],
                                             "no-op, sftp remote": []}  # fmt: skip
            for i in range(args.repeat):
                kinds = list(times)[:3] if i % 2 == 0 else list(reversed(list(times)[:3]))
                for kind in kinds:
                    remote = remotes["sftp"] if "sftp" in kind else remotes["file"] if "file" in kind else None
                    folder = _fresh(tmp, f"{recipe}-{i}-{kind.replace(', ', '-').replace(' ', '_')}")
                    command = [*base, *([f"cache.remote={remote}"] if remote else [])]
                    seconds, _ = timed(command, folder)
                    times[kind].append(seconds)
                    if kind == "cold, sftp remote":
                        timed(command, folder)  # leaves the stamp a no-op finds (the first one after a build)
                        times["no-op, sftp remote"].append(timed(command, folder)[0])
                print(f"{recipe} round {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                      flush=True)  # fmt: skip
            cold = statistics.median(times["cold, no remote"])
            for kind, values in times.items():
                rows.append(f"{recipe:<14}{kind:<22}{statistics.median(values):>9.2f}{statistics.median(values) / cold:>9.2f}x")
    print(f"\n{'recipe':<14}{'build':<22}{'seconds':>9}{'vs cold':>10}   (medians; load {os.getloadavg()[0]:.1f} at the end)")
    print("\n".join(rows))


def _fresh(tmp: str, name: str) -> Path:
    folder = Path(tmp) / name
    folder.mkdir(parents=True)
    return folder


if __name__ == "__main__":
    main()
