"""X-ray physics for DRRs of a CT: materials from Hounsfield units, a tungsten spectrum, polychromatic transmission.

**Materials.** A voxel is a mixture of air, water-equivalent soft tissue and cortical bone (ICRU-44). Up to
0 HU it mixes air and soft tissue (soft volume fraction ``1 + HU/1000``); above, soft tissue and bone, with
bone's volume fraction ``HU / BONE_HU`` rising to 1 at the HU of pure cortical bone. ``BONE_HU`` follows from
the tables at ``CT_ENERGY_KEV``, the effective energy of a 120 kVp CT beam, so the mixture reproduces the
CT's own attenuation there exactly. Air's attenuation (0.0012 g/cm³) is left out.

**Spectrum.** Kramers' law for a thick tungsten target, photons per keV ∝ (kVp - E) / E, integrated over
equal-width bins from 10 keV to the peak, then hardened by the tube's total filtration in aluminium
(inherent plus added; at least 2.5 mm Al above 70 kVp by IEC 60601-1-3). Tungsten's K lines (59-69 keV)
are left out.

**Transmission.** An energy-integrating detector weighs each bin by its photons times their energy:
``I/I0 = sum_E w(E) exp(-mu_s(E) L_s - mu_b(E) L_b)``, with ``L_s`` and ``L_b`` the soft-tissue and bone
mass path lengths (g/cm²) cast through the CT. Beam hardening follows. ``-log(I/I0)`` is the effective line
integral ``spinemorph.data.detector.expose`` takes, which then adds scatter, blur and quantum noise.

**Heel effect.** The anode's self-absorption makes the intensity fall along the anode-cathode axis: a factor
``(1 - heel) ** p``, ``p`` running from 0 on the cathode side of the field to 1 on the anode side.

Mass attenuation coefficients: NIST XCOM, J. H. Hubbell and S. M. Seltzer, *Tables of X-Ray Mass Attenuation
Coefficients and Mass Energy-Absorption Coefficients*, NISTIR 5632 (1995), physics.nist.gov/PhysRefData/
XrayMassCoef (Table 4: "Water, Liquid" and "Bone, Cortical (ICRU-44)"; Table 3: aluminium, Z = 13),
interpolated log-log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ENERGIES_KEV", "MASS_ATTENUATION", "DENSITY", "CT_ENERGY_KEV", "BONE_HU", "mass_attenuation", "fractions",
    "decompose", "Spectrum", "kramers_spectrum", "Exposure", "sample_exposure", "transmission", "heel_field",
    "effective_line",
]

#: Energies (keV) of the NIST tables below.
ENERGIES_KEV = np.array([10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
#: Mass attenuation coefficients mu/rho (cm²/g) at ``ENERGIES_KEV``, NIST XCOM (NISTIR 5632).
MASS_ATTENUATION: dict[str, np.ndarray] = {
    "water": np.array([5.329, 1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505]),
    "bone": np.array([28.51, 9.032, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480]),
    "aluminium": np.array([26.23, 7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378]),
}
#: Densities (g/cm³): water, cortical bone (ICRU-44), aluminium.
DENSITY: dict[str, float] = {"water": 1.0, "bone": 1.92, "aluminium": 2.699}
#: Effective energy (keV) of a 120 kVp CT beam, at which Hounsfield units are read.
CT_ENERGY_KEV = 70.0
_LOWEST_KEV = 10.0
_REFERENCE_PITCH_MM = 0.15  # the pitch spinemorph.data.detector.Detector counts its photons for
#: Photons per mm² per mAs at 1 m behind 2.5 mm Al at 80 kVp (about 50 µGy/mAs of air kerma, 3.5e4 photons per
#: mm² per µGy at a 45 keV mean energy), times 0.4 for the grid's primary transmission and the detector's
#: absorption. Output grows about as kVp².
_PHOTONS_PER_MAS_MM2 = 0.7e6


def mass_attenuation(material: str, energy_kev) -> np.ndarray:
    """Return mu/rho (cm²/g) of "water", "bone" or "aluminium" at the given energies, interpolated log-log."""
    if material not in MASS_ATTENUATION:
        raise ValueError(f"Unknown material {material!r}: use one of {', '.join(MASS_ATTENUATION)}.")
    e = np.asarray(energy_kev, dtype=np.float64)
    if np.any(e < ENERGIES_KEV[0]) or np.any(e > ENERGIES_KEV[-1]):
        raise ValueError(f"The tables cover {ENERGIES_KEV[0]:g}-{ENERGIES_KEV[-1]:g} keV, not {e.min():g}-{e.max():g}.")
    return np.exp(np.interp(np.log(e), np.log(ENERGIES_KEV), np.log(MASS_ATTENUATION[material])))


def _linear(material: str, energy_kev: float) -> float:
    return float(mass_attenuation(material, energy_kev)) * DENSITY[material]


#: Hounsfield units of pure cortical bone at ``CT_ENERGY_KEV`` (about 1590 HU).
BONE_HU = 1000.0 * (_linear("bone", CT_ENERGY_KEV) / _linear("water", CT_ENERGY_KEV) - 1.0)


def fractions(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the volume fractions (air, soft tissue, bone) of voxels in HU; they sum to 1 up to ``BONE_HU``.

    Above ``BONE_HU`` (metal, dense contrast) bone's fraction keeps rising past 1, so the density goes on
    growing with HU; air and soft tissue are 0 there.
    """
    hu = np.asarray(hu, dtype=np.float32)
    bone = np.clip(hu, 0.0, None) / np.float32(BONE_HU)
    soft = np.where(hu <= 0, np.clip(1.0 + hu / 1000.0, 0.0, 1.0), np.clip(1.0 - bone, 0.0, None))
    air = np.where(hu <= 0, 1.0 - soft, 0.0)
    return air.astype(np.float32), soft.astype(np.float32), bone.astype(np.float32)


def decompose(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the soft-tissue and bone densities (g/cm³, float32) of voxels in HU."""
    _, soft, bone = fractions(hu)
    soft *= np.float32(DENSITY["water"])
    bone *= np.float32(DENSITY["bone"])
    return soft, bone


@dataclass(frozen=True)
class Spectrum:
    """A polychromatic beam: bin energies (keV) and the fraction of the photons in each bin."""

    energies_kev: np.ndarray
    photons: np.ndarray

    @property
    def mean_kev(self) -> float:
        """Return the photons' mean energy (keV)."""
        return float((self.energies_kev * self.photons).sum() / self.photons.sum())

    @property
    def detector_weights(self) -> np.ndarray:
        """Return each bin's share of an energy-integrating detector's signal (photons × energy), summing to 1."""
        w = self.photons * self.energies_kev
        return w / w.sum()


def kramers_spectrum(kvp: float, filtration_mm_al: float = 2.5, bins: int = 16) -> Spectrum:
    """Return the Kramers spectrum of a tungsten anode at ``kvp`` behind ``filtration_mm_al`` of aluminium."""
    if not 20.0 <= kvp <= ENERGIES_KEV[-1]:
        raise ValueError(f"The tube voltage must lie between 20 and {ENERGIES_KEV[-1]:g} kVp, not {kvp}.")
    if filtration_mm_al < 0:
        raise ValueError(f"The filtration is a thickness of aluminium in mm, not {filtration_mm_al}.")
    edges = np.linspace(_LOWEST_KEV, kvp, bins + 1)
    lo, hi = edges[:-1], edges[1:]
    photons = kvp * np.log(hi / lo) - (hi - lo)  # the integral of (kVp - E) / E over each bin
    centre = 0.5 * (lo + hi)
    photons = photons * np.exp(-mass_attenuation("aluminium", centre) * DENSITY["aluminium"] * filtration_mm_al / 10.0)
    return Spectrum(centre, photons / photons.sum())


@dataclass(frozen=True)
class Exposure:
    """The tube side of a radiograph.

    Args:
        kvp: peak tube voltage.
        filtration_mm_al: total filtration, inherent plus added, in mm of aluminium.
        mas: tube current-time product; with ``kvp`` and the distance it sets the quanta, hence the noise.
        heel: fraction of the intensity lost across the field towards the anode (heel effect).
        heel_angle_deg: direction of the anode in the image: 0 towards the top row, 90 towards the last column.
        bins: energy bins of the spectrum.
        bone_boost: multiplies the bone mass path (1 is the physics above). A domain-randomisation knob for what
            the model leaves out and makes real films show more bone than a plain DRR: the detector's energy
            response (a CsI panel absorbs the low energies, where bone stands out, best), and thin cortices and
            endplates that a CT's 2-3 mm slices smear out.
    """

    kvp: float = 85.0
    filtration_mm_al: float = 3.0
    mas: float = 16.0
    heel: float = 0.15
    heel_angle_deg: float = 0.0
    bins: int = 16
    bone_boost: float = 1.0

    def __post_init__(self) -> None:
        if not 40.0 <= self.kvp <= 150.0:
            raise ValueError(f"The tube voltage should lie between 40 and 150 kVp, not {self.kvp}.")
        if not 0.0 <= self.filtration_mm_al <= 20.0:
            raise ValueError(f"The filtration should lie between 0 and 20 mm Al, not {self.filtration_mm_al}.")
        if self.mas <= 0:
            raise ValueError(f"The exposure must be positive, not {self.mas} mAs.")
        if not 0.0 <= self.heel < 0.9:
            raise ValueError(f"The heel effect removes a fraction between 0 and 0.9 of the intensity, not {self.heel}.")
        if not 4 <= self.bins <= 64:
            raise ValueError(f"Use 4 to 64 energy bins, not {self.bins}.")
        if not 0.5 <= self.bone_boost <= 8.0:
            raise ValueError(f"bone_boost should lie between 0.5 and 8, not {self.bone_boost}.")

    @property
    def spectrum(self) -> Spectrum:
        """Return the spectrum at the detector."""
        return kramers_spectrum(self.kvp, self.filtration_mm_al, self.bins)

    def photons(self, sdd_mm: float | None) -> float:
        """Return the quanta a 0.15 mm detector pixel receives with nothing in the beam (``Detector.photons``)."""
        distance = 1000.0 if sdd_mm is None else sdd_mm
        per_mm2 = _PHOTONS_PER_MAS_MM2 * self.mas * (self.kvp / 80.0) ** 2 * (1000.0 / distance) ** 2
        return float(per_mm2 * _REFERENCE_PITCH_MM**2)


def sample_exposure(rng: np.random.Generator) -> Exposure:
    """Return a random but plausible lateral spine exposure: 60-120 kVp, 2.5-5 mm Al, 4-60 mAs, heel 5-35 %,
    bone boost 1.8-4 (log-uniform: at 1 this chest CT's spine all but vanishes behind the mediastinum)."""
    return Exposure(kvp=float(rng.uniform(60.0, 120.0)), filtration_mm_al=float(rng.uniform(2.5, 5.0)),
                    mas=float(np.exp(rng.uniform(np.log(4.0), np.log(60.0)))), heel=float(rng.uniform(0.05, 0.35)),
                    heel_angle_deg=float(rng.uniform(0.0, 360.0)),
                    bone_boost=float(np.exp(rng.uniform(np.log(1.8), np.log(4.0)))))


def transmission(soft_gcm2: np.ndarray, bone_gcm2: np.ndarray, spectrum: Spectrum) -> np.ndarray:
    """Return I/I0 (float32) behind soft-tissue and bone mass path lengths (g/cm²), energy-integrating."""
    mu_s = mass_attenuation("water", spectrum.energies_kev).astype(np.float32)
    mu_b = mass_attenuation("bone", spectrum.energies_kev).astype(np.float32)
    soft = np.asarray(soft_gcm2, dtype=np.float32)
    bone = np.asarray(bone_gcm2, dtype=np.float32)
    out = np.zeros(np.broadcast_shapes(soft.shape, bone.shape), np.float32)
    for w, s, b in zip(spectrum.detector_weights.astype(np.float32), mu_s, mu_b, strict=True):
        out += w * np.exp(-(s * soft + b * bone))
    return out


def heel_field(shape: tuple[int, int], heel: float, angle_deg: float) -> np.ndarray:
    """Return the heel effect's intensity factor (H, W), 1 on the cathode side, ``1 - heel`` on the anode side."""
    h, w = shape
    a = np.deg2rad(angle_deg)
    rows = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    cols = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    along = np.float32(-np.cos(a)) * rows + np.float32(np.sin(a)) * cols
    span = float(along.max() - along.min()) or 1.0
    return np.power(np.float32(1.0 - heel), (along - along.min()) / np.float32(span)).astype(np.float32)


def effective_line(soft_gcm2: np.ndarray, bone_gcm2: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Return ``-log(I/I0)`` with the heel effect: the line integral ``spinemorph.data.detector.expose`` takes."""
    t = transmission(soft_gcm2, np.asarray(bone_gcm2, np.float32) * np.float32(exposure.bone_boost),
                     exposure.spectrum)
    if exposure.heel > 0:
        t *= heel_field(t.shape, exposure.heel, exposure.heel_angle_deg)
    return -np.log(np.maximum(t, np.float32(1e-30)))
