"""X-ray physics of the CT DRRs: NIST tables, materials from HU, the Kramers spectrum, transmission, heel effect."""

from __future__ import annotations

import numpy as np
import pytest

from spinemorph.data.xray import (
    BONE_HU,
    CT_ENERGY_KEV,
    DENSITY,
    Exposure,
    decompose,
    effective_line,
    fractions,
    heel_field,
    kramers_spectrum,
    mass_attenuation,
    sample_exposure,
    transmission,
)


def test_mass_attenuation_is_the_nist_table_at_its_nodes_and_log_log_between():
    assert mass_attenuation("water", [50.0]) == pytest.approx([0.2269])
    assert mass_attenuation("bone", [100.0]) == pytest.approx([0.1855])
    assert mass_attenuation("aluminium", [30.0]) == pytest.approx([1.128])
    between = mass_attenuation("water", [np.sqrt(40.0 * 50.0)])  # the geometric mean of two nodes
    assert between == pytest.approx([np.sqrt(0.2683 * 0.2269)])


def test_unknown_materials_and_energies_off_the_table_are_refused():
    with pytest.raises(ValueError, match="Unknown material 'lead'"):
        mass_attenuation("lead", [50.0])
    with pytest.raises(ValueError, match="10-150 keV"):
        mass_attenuation("water", [5.0])


def test_material_fractions_sum_to_one_and_reproduce_the_ct_number():
    hu = np.linspace(-1000.0, BONE_HU, 301)
    air, soft, bone = fractions(hu)
    np.testing.assert_allclose(air + soft + bone, 1.0, atol=1e-6)
    assert (air[0], soft[0], bone[0]) == (1.0, 0.0, 0.0)
    assert (air[-1], soft[-1]) == (0.0, pytest.approx(0.0, abs=1e-6)) and bone[-1] == pytest.approx(1.0)
    assert np.all(bone[hu <= 0] == 0) and np.all(air[hu > 0] == 0)
    s, b = decompose(hu)  # at the CT's own energy the mixture attenuates as the HU say
    mu = s * mass_attenuation("water", CT_ENERGY_KEV) + b * mass_attenuation("bone", CT_ENERGY_KEV)
    np.testing.assert_allclose(1000 * (mu / mass_attenuation("water", CT_ENERGY_KEV) - 1), hu, atol=0.05)


def test_cortical_bone_is_about_1600_hu_and_denser_voxels_keep_getting_denser():
    assert 1500 < BONE_HU < 1700
    _, bone = decompose(np.array([BONE_HU, 2 * BONE_HU]))
    np.testing.assert_allclose(bone, [DENSITY["bone"], 2 * DENSITY["bone"]], rtol=1e-5)


def test_the_spectrum_hardens_with_voltage_and_filtration():
    means = [kramers_spectrum(kvp, 3.0).mean_kev for kvp in (60, 80, 100, 120)]
    assert np.all(np.diff(means) > 0)
    filtered = [kramers_spectrum(80, mm).mean_kev for mm in (1.0, 2.5, 5.0, 10.0)]
    assert np.all(np.diff(filtered) > 0)
    spec = kramers_spectrum(80, 2.5, bins=12)
    assert spec.energies_kev.size == 12 and spec.energies_kev.max() < 80
    assert spec.photons.sum() == pytest.approx(1.0) and np.all(spec.photons > 0)
    assert spec.detector_weights.sum() == pytest.approx(1.0)
    assert 35 < spec.mean_kev < 50  # a filtered 80 kVp beam


def test_bone_contrast_falls_with_voltage():
    contrast = []
    for kvp in (60, 80, 100, 120):
        spec = kramers_spectrum(kvp, 3.0)
        contrast.append(float(np.log(transmission(20.0, 0.0, spec) / transmission(20.0, 1.0, spec))))
    assert np.all(np.diff(contrast) < 0)
    assert contrast[0] > 1.5 * contrast[-1]


def test_nothing_in_the_beam_transmits_everything_and_thick_water_hardens_the_beam():
    spec = kramers_spectrum(90, 3.0)
    assert transmission(np.zeros(3), np.zeros(3), spec) == pytest.approx(np.ones(3))
    line = -np.log(transmission(np.array([10.0, 20.0]), np.zeros(2), spec))
    assert line[1] < 2 * line[0]  # the second 10 g/cm² attenuate less: beam hardening


def test_heel_field_runs_from_the_cathode_to_the_anode():
    field = heel_field((50, 40), 0.3, 0.0)  # anode towards the top row
    np.testing.assert_allclose(field[0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(field[-1], 1.0, rtol=1e-6)
    assert np.all(np.diff(field[:, 7]) > 0) and np.ptp(field, axis=1).max() < 1e-6
    sideways = heel_field((50, 40), 0.3, 90.0)  # towards the last column
    np.testing.assert_allclose(sideways[:, -1], 0.7, rtol=1e-6)


def test_effective_line_without_heel_is_minus_log_transmission():
    ex = Exposure(kvp=70, heel=0.0)
    soft, bone = np.full((4, 5), 15.0), np.full((4, 5), 0.8)
    np.testing.assert_allclose(effective_line(soft, bone, ex), -np.log(transmission(soft, bone, ex.spectrum)),
                               rtol=1e-6)
    heeled = effective_line(soft, bone, Exposure(kvp=70, heel=0.2))
    assert heeled[0, 0] == pytest.approx(effective_line(soft, bone, ex)[0, 0] - np.log(0.8), rel=1e-5)


def test_exposure_quanta_follow_mas_kvp_squared_and_the_inverse_square_law():
    base = Exposure(kvp=80, mas=10).photons(1000.0)
    assert Exposure(kvp=80, mas=20).photons(1000.0) == pytest.approx(2 * base)
    assert Exposure(kvp=120, mas=10).photons(1000.0) == pytest.approx(2.25 * base)
    assert Exposure(kvp=80, mas=10).photons(2000.0) == pytest.approx(base / 4)


@pytest.mark.parametrize("kwargs, message", [({"kvp": 30}, "tube voltage"), ({"mas": 0}, "positive"),
                                              ({"heel": 0.95}, "heel"), ({"bins": 2}, "energy bins"),
                                              ({"filtration_mm_al": -1}, "filtration")])
def test_implausible_exposures_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Exposure(**kwargs)


def test_sampled_exposures_are_plausible_and_seeded():
    draws = [sample_exposure(np.random.default_rng(i)) for i in range(50)]
    assert all(60 <= e.kvp <= 120 and 2.5 <= e.filtration_mm_al <= 5 and 0.05 <= e.heel <= 0.35 for e in draws)
    assert sample_exposure(np.random.default_rng(7)) == sample_exposure(np.random.default_rng(7))
