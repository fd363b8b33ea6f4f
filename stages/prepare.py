"""Stage prepare: parse the archive's binary records, split train / val, keep the test batch."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.archive import read_cifar10_archive
from cifarlab.data.prepared import save_split
from cifarlab.data.split import make_splits
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

ARCHIVE = "data/raw/cifar-10-binary.tar.gz"
OUT = "data/prepared"
COUNTS = "reports/class_counts.csv"


def main() -> None:
    params = load_params()
    split, md5 = params["split"], params["data"]["md5"]
    with stage_run(
        "prepare", {"split": split}, experiment=params["tracking"]["experiment"], data_md5=md5
    ) as run:
        archive = read_cifar10_archive(ARCHIVE)
        splits, counts = make_splits(archive, split["val_size"], split["seed"])
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
