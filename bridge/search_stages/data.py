"""The data sets of the detector stages, written once per run into ``RUN_DIR/data``: D_verify
(one image per category of the proxy training set, at least ``verify_min_images``) and the proxy
split of the training set (a held-out validation subset, as the paper's 10k images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.search_stages.settings import PROXY_VAL, DetectorSetup


@dataclass(frozen=True)
class SearchData:
    """COCO files of the search's data sets (in RUN_DIR/data) and their image folder."""

    images: str
    verify: str
    proxy_train: str
    proxy_val: str
    num_proxy_train: int
    description: str


def prepare_search_data(d: DetectorSetup, run_dir: Path) -> SearchData:
    """D_verify (one image per category, at least ``verify_min_images``) and the proxy split of
    the training set (``proxy_val`` images held out; left out: PROXY_VAL, at most a quarter).

    Raises:
      SettingsError: a ``--proxy-val`` the training set cannot spare.
    """
    from bridge.data import coco as cocofile
    from bridge.data import prepare
    from bridge.data.sampling import d_verify, proxy_split
    from jaxloss.search.settings import SettingsError

    out = run_dir / "data"
    source = prepare(d.data, d.images, val="train", work_dir=out / "source", seed=d.seed)
    train = cocofile.load(source.train_ann)
    n = len(train["images"])
    held = d.proxy_val or min(PROXY_VAL, max(1, n // 4))
    if not 1 <= held < n:
        raise SettingsError(f"--proxy-val {held}: must be between 1 and {n - 1} (the training "
                            f"set has {n} images)")
    proxy_train, proxy_val = proxy_split(train, held, d.seed)
    verify = d_verify(proxy_train, d.seed, min_images=d.verify_min_images)
    paths = {name: str(cocofile.write(coco, out / f"{name}.json"))
             for name, coco in (("verify", verify), ("proxy_train", proxy_train),
                                ("proxy_val", proxy_val))}
    return SearchData(str(source.train_images), paths["verify"], paths["proxy_train"],
                      paths["proxy_val"], len(proxy_train["images"]),
                      f"{source.description}; D_verify {len(verify['images'])} images, proxy "
                      f"{len(proxy_train['images'])} train / {held} val")
