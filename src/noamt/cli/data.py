"""``noamt-data``: fetch a corpus release into the data folder, and say what is there.

    noamt-data fetch multi30k                    # all of Multi30k Task 1 (raw en/de/fr/cs, tok/)
    noamt-data fetch multi30k --langs en,de      # only the English and German files
    noamt-data fetch multi30k --url http://127.0.0.1:8000/task1   # from a mirror of data/task1
    noamt-data list                              # which corpora and splits are present where

The folder is ``--dir``, else $NOAMT_DATA_DIR, else $NOAMT_CACHE_DIR/data/<corpus>, else
~/.cache/noamt/data/<corpus>: where ``noamt-train`` looks for the data when ``data.dir`` is not
set. Files already present and right are skipped; an interrupted download resumes. A download
gives up after $NOAMT_FETCH_STALL_S seconds without a byte (default 60) or past its deadline
($NOAMT_FETCH_DEADLINE_S, default 60 s plus 1 s per 16 KiB of the file); a second fetch into a
folder that one is writing stops in one line; Ctrl-C stops with status 130, what came kept for the
next run to resume.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from noamt.data.fetch import RELEASES, FetchError, check, default_data_dir, fetch, release_url, select_languages


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="noamt-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download and verify a corpus release")
    get.add_argument("corpus", choices=sorted(RELEASES))
    get.add_argument("--dir", type=Path, help="data folder (default: see above)")
    get.add_argument("--url", help="base URL of the release (default: $NOAMT_MULTI30K_URL, else the dataset's own)")
    get.add_argument("--langs", help="comma-separated languages to fetch (default: all)")
    show = commands.add_parser("list", help="which corpora and splits are present where")
    show.add_argument("--dir", type=Path, help="data folder of one corpus (default: each corpus's own)")
    return parser.parse_args(argv)


def split_of(path: str) -> tuple[str, str, str]:
    """("raw" | "tok", split, language) of a release path such as tok/val.lc.norm.tok.de."""
    kind, name = path.split("/", 1)
    stem = name.removesuffix(".gz")
    return kind, stem.split(".", 1)[0], stem.rsplit(".", 1)[-1]


def describe(corpus: str, folder: Path) -> list[str]:
    """Lines saying which splits and languages of ``corpus`` are in ``folder``, and what is not."""
    statuses = check(RELEASES[corpus], folder)
    present = defaultdict(list)
    for status in statuses:
        if status.state == "ok":
            kind, split, lang = split_of(status.path)
            present[(kind, split)].append(lang)
    ok = sum(s.state == "ok" for s in statuses)
    lines = [f"{corpus} in {folder}: {ok} of the release's {len(statuses)} files"]
    for kind in ("raw", "tok"):
        splits = [f"{split} ({' '.join(langs)})" for (k, split), langs in present.items() if k == kind]
        if splits:
            lines.append(f"  {kind}: {', '.join(splits)}")
    for state in ("damaged", "missing"):
        paths = [s.path for s in statuses if s.state == state]
        if paths:
            lines.append(f"  {state} ({len(paths)}): {', '.join(paths)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "list":
            for corpus in sorted(RELEASES):
                print("\n".join(describe(corpus, args.dir or default_data_dir(corpus))))
            return 0
        release = RELEASES[args.corpus]
        folder = args.dir or default_data_dir(args.corpus)
        languages = [x.strip() for x in args.langs.split(",") if x.strip()] if args.langs else None
        print(f"[noamt-data] {args.corpus} from {release_url(release, args.url)} into {folder}", file=sys.stderr)
        counts = fetch(release, folder, args.url, select_languages(languages), progress=lambda line: print(line))
        print(f"[noamt-data] {counts['downloaded']} downloaded, {counts['present']} already present and verified")
    except FetchError as err:
        sys.exit(f"noamt-data: {err}")
    except KeyboardInterrupt:
        interrupted = "interrupted; a file cut short is kept as <file>.part and resumes when the command runs again"
        print(f"noamt-data: {interrupted}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
