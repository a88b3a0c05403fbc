"""Turn a public dataset's layout into a training manifest.

    python -m multimodal_df.datasets fakeavceleb ROOT --out manifest.csv
    python -m multimodal_df.datasets dfdc ROOT --out manifest.csv          # ROOT holds dfdc_train_part_*/metadata.json
    python -m multimodal_df.datasets lavdf ROOT --out manifest.csv         # ROOT/metadata.json (or metadata.min.json)
    python -m multimodal_df.datasets avdeepfake1m ROOT --out manifest.csv  # ROOT/{train,val}_metadata.json
    python -m multimodal_df.datasets asvspoof PROTOCOL --audio-dir DIR --out manifest.csv
    python -m multimodal_df.datasets folders ROOT --out manifest.csv       # real/ + fake/ (or split/real|fake)
    python -m multimodal_df.datasets prefixed ROOT --out manifest.csv      # real_<source>_* / fake_<source>_* names

See :mod:`multimodal_df.training.adapters` for what each adapter keeps.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError, ExitCode, run_command


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.datasets", description="Turn a dataset's layout into a training manifest."
    )
    p.add_argument("kind", choices=["fakeavceleb", "dfdc", "lavdf", "avdeepfake1m", "asvspoof", "folders", "prefixed"])
    p.add_argument("root", help="dataset folder (asvspoof: the protocol file)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--audio-dir", help="asvspoof: folder with the audio files")
    p.add_argument("--split", help="asvspoof: split to give every row (train/valid/test)")
    args = p.parse_args(argv)
    if args.kind == "asvspoof" and not args.audio_dir:
        p.error("asvspoof needs --audio-dir")

    def body() -> int:
        from .training.adapters import ADAPTERS, asvspoof
        from .training.manifests import write_manifest

        try:
            rows = (
                asvspoof(args.root, args.audio_dir, args.split)
                if args.kind == "asvspoof"
                else ADAPTERS[args.kind](args.root)
            )
        except OSError as exc:
            raise ConfigError(f"{args.root}: {exc.strerror or exc}") from None
        write_manifest(rows, args.out)
        fake = sum(r.label for r in rows)
        print(f"wrote {args.out}: {len(rows)} files ({fake} fake, {len(rows) - fake} real)")
        return ExitCode.OK

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
