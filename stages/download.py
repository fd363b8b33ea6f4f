"""Stage download: fetch the CIFAR-10 binary archive from ``data.url`` and verify its md5."""

from cifarlab.cli import run_stage
from cifarlab.data.download import download
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

ARCHIVE = "data/raw/cifar-10-binary.tar.gz"


def main() -> None:
    params = load_params()
    data, tracking = params["data"], params["tracking"]
    url, md5 = data.str("url"), data.str("md5")
    with stage_run(
        "download",
        {"data": data.to_dict()},
        experiment=tracking.str("experiment"),
        data_md5=md5,
    ) as run:
        path = download(url, ARCHIVE, md5, progress=True)
        run.log_metrics({"archive_bytes": path.stat().st_size})
        print(f"download: {url} -> {path} (md5 {md5} verified)")


if __name__ == "__main__":
    run_stage(main)
