"""A DICOMweb datastore for radiographs: it lists CR, DX, RG and DR series (MONAI Label's default filter is CT)."""

from __future__ import annotations

import logging
from typing import List

from dicomweb_client.api import DICOMwebClient
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from pydicom.dataset import Dataset

__all__ = ["PROJECTION_MODALITIES", "RadiographDICOMWebDatastore", "dicomweb_datastore"]

log = logging.getLogger(__name__)
PROJECTION_MODALITIES = ("CR", "DX", "RG", "DR")


class RadiographDICOMWebDatastore(DICOMWebDatastore):
    """Lists every series of a projection modality: one QIDO query per modality, merged in order."""

    def __init__(self, *args, modalities=PROJECTION_MODALITIES, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.modalities = tuple(modalities)

    def list_images(self) -> List[str]:
        series: list[str] = []
        for modality in self.modalities:
            found = self._client.search_for_series(search_filters={**self._search_filter, "Modality": modality})
            for ds in found:
                uid = str(Dataset.from_json(ds)["SeriesInstanceUID"].value)
                if uid not in series:
                    series.append(uid)
        log.info("DICOMweb: %d radiograph series (%s)", len(series), "/".join(self.modalities))
        return series


def dicomweb_datastore(url: str, modalities=PROJECTION_MODALITIES) -> RadiographDICOMWebDatastore:
    """Return the datastore for a DICOMweb server. Unlike MONAI Label's, it fetches no dcmqi tools from GitHub."""
    filters = {k: v for k, v in settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER.items() if k != "Modality"}
    client = DICOMwebClient(url=url, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
    return RadiographDICOMWebDatastore(client=client, search_filter=filters, cache_path=cache,
                                       fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                       convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI,
                                       modalities=modalities)
