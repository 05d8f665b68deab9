"""Detection data for the bridge: one in-memory form (a COCO dict), readers with clear errors.

* :mod:`bridge.data.coco` — COCO json: ``load`` (validated), ``write``, ``subset``;
* :mod:`bridge.data.voc` — Pascal VOC xml → COCO; :mod:`bridge.data.bdd` — BDD100K → COCO;
* :mod:`bridge.data.embedded` — the generated default data set (no download);
* :mod:`bridge.data.sampling` — D_verify (one image per category) and the proxy split;
* :mod:`bridge.data.source` — ``prepare(data=..., val=...)``: specs → checked COCO files.

Every problem with an annotation file raises :class:`DataError` naming the file and the problem.
"""

from bridge.data.bdd import bdd_to_coco
from bridge.data.coco import load as load_coco
from bridge.data.embedded import EmbeddedSpec, generate as generate_embedded
from bridge.data.errors import DataError
from bridge.data.sampling import d_verify, proxy_split
from bridge.data.source import DetectionData, prepare
from bridge.data.voc import voc_to_coco

__all__ = ["DataError", "DetectionData", "EmbeddedSpec", "bdd_to_coco", "d_verify",
           "generate_embedded", "load_coco", "prepare", "proxy_split", "voc_to_coco"]
