"""Stage prepare: parse the archive's binary records, split train / val, keep the test batch."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.archive import read_cifar10_archive
from cifarlab.params import load_params
from cifarlab.pipeline import make_splits, save_split
from cifarlab.tracking import stage_run

ARCHIVE = "data/raw/cifar-10-binary.tar.gz"
OUT = "data/prepared"
COUNTS = "reports/class_counts.csv"


def main() -> None:
    params = load_params()
    split, md5 = params["split"], params["data"].str("md5")
    val_size, seed = split.number("val_size"), split.int("seed")
    with stage_run(
        "prepare",
        {"split": split.to_dict()},
        experiment=params["tracking"].str("experiment"),
        data_md5=md5,
    ) as run:
        archive = read_cifar10_archive(ARCHIVE)
        splits, counts = make_splits(archive, val_size, seed)
        for name, data in splits.items():
            save_split(f"{OUT}/{name}.npz", data)
        io.write_json(
            f"{OUT}/meta.json",
            {
                "class_names": list(archive.class_names),
                "archive_md5": md5,
                "sizes": {name: int(len(data.y)) for name, data in splits.items()},
            },
        )
        io.write_text(COUNTS, counts.to_csv())
        run.log_metrics({f"n_{name}": len(data.y) for name, data in splits.items()})
        run.log_artifact(COUNTS)
        print(counts.to_string())


if __name__ == "__main__":
    run_stage(main)
