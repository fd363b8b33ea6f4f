"""Stage download: fetch the CIFAR-10 binary archive from ``data.url`` and verify its md5."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.download import download
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

ARCHIVE = "data/raw/cifar-10-binary.tar.gz"


def main() -> None:
    params = load_params()
    data = params["data"]
    with stage_run(
        "download",
        {"data": data},
        experiment=params["tracking"]["experiment"],
        data_md5=data["md5"],
    ) as run:
        path = download(data["url"], ARCHIVE, data["md5"], progress=True)
        # Still staged: the archive is renamed into place once the stage has succeeded.
        run.log_metrics({"archive_bytes": io.current_path(path).stat().st_size})
        print(f"download: {data['url']} -> {path} (md5 {data['md5']} verified)")


if __name__ == "__main__":
    run_stage(main)
