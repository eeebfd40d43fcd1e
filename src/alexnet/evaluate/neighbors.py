"""Fig. 4 (right) and §6.1's retrieval: the search that ``alexnet neighbors`` and the report
both run - the features of a gallery and of query images, each query's nearest gallery
images in that space, and optionally how well short binary codes recover them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alexnet.errors import AlexNetError
from alexnet.evaluate.binary_codes import CodeConfig, CodeReport, measure_codes
from alexnet.evaluate.inference import Features, NeighborResult, extract_features, find_neighbors
from alexnet.evaluate.inputs import ImageSource
from alexnet.evaluate.scoring import LoadedModel


class NoQueryImages(AlexNetError):
    """Not one query image could be read (each skipped file is in ``query_source.skipped``)."""


@dataclass
class NeighborSearch:
    gallery: Features
    queries: Features
    result: NeighborResult
    codes: CodeReport | None = None  # with code_bits > 0 and a recall_source


def search_neighbors(loaded: LoadedModel, gallery_source: ImageSource, query_source: ImageSource,
                     k: int, *, gallery_limit: int | None = None,
                     recall_source: ImageSource | None = None, code_bits: int = 0,
                     code_steps: int = 400, **features: Any) -> NeighborSearch:
    """The ``k`` nearest of the first ``gallery_limit`` gallery images to each query, in the
    features ``features`` selects (``extract_features``'s options: layer, default fc7, batch
    size, device, precision, progress). With ``code_bits``, an auto-encoder is trained on the
    gallery's features and its codes' recall of the exact neighbours of ``recall_source``'s
    images is measured against random projections (§6.1)."""
    gallery = extract_features(loaded, gallery_source, limit=gallery_limit, **features)
    try:
        queries = extract_features(loaded, query_source, **features)
    except AlexNetError as error:
        raise NoQueryImages(str(error)) from error
    search = NeighborSearch(gallery, queries, find_neighbors(gallery, queries, k))
    if code_bits > 0 and recall_source is not None and len(gallery.labels) >= 2:
        held_out = extract_features(loaded, recall_source, **features)
        _, search.codes = measure_codes(torch.from_numpy(gallery.features),
                                        torch.from_numpy(held_out.features), k,
                                        CodeConfig(bits=code_bits, steps=code_steps))
    return search
