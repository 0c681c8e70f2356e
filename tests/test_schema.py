import math

import pytest

from cryofm import schema


def test_every_required_field_present_with_units():
    need = {"uid": "", "ImageName": "", "EMPIAR": "", "EMDB": "", "PDB": "", "AngleRot": "deg",
            "AngleTilt": "deg", "AnglePsi": "deg", "OriginXAngst": "Å", "OriginYAngst": "Å",
            "DefocusU": "Å", "DefocusV": "Å", "DefocusAngle": "deg", "ClassNumber": "", "ClassESS": "",
            "ClassECA": "", "ClassResolution": "Å", "AlignmentError3D": "", "MicrographName": "",
            "MicrographShapeX": "px", "CoordinateX": "px", "CoordinateXFrac": "", "Voltage": "kV",
            "ElectronDose": "e⁻/Å²", "SphericalAberration": "mm", "AmplitudeContrast": "",
            "ImageSize": "px", "ImagePixelSize": "Å/px", "EffectiveImagePixelSize": "Å/px",
            "ReconstructionResolution": "Å", "EMDBResolution": "Å", "MolecularWeight": "kDa",
            "Subunits": "", "MaxDiameter": "Å", "Symmetry": "", "HasDNA": "", "HasRNA": "",
            "ProteinClass": "", "SampleName": ""}
    for name, unit in need.items():
        assert schema.field(name).unit == unit, name


def test_acquisition_parameters_are_the_nuisance_list():
    assert set(schema.ACQUISITION_FIELDS) == {"DefocusU", "DefocusV", "DefocusAngle", "ImagePixelSize",
                                              "Voltage", "SphericalAberration", "ElectronDose",
                                              "AmplitudeContrast"}


def test_missing_is_explicit_never_zero():
    rec = schema.empty_record()
    assert math.isnan(rec["DefocusU"]) and rec["Symmetry"] is None and rec["ClassNumber"] is None
    js = schema.to_json_record({"DefocusU": 12000.0, "ClassNumber": "3", "HasRNA": "true"})
    assert js["DefocusU"] == 12000.0 and js["ClassNumber"] == 3 and js["HasRNA"] is True
    assert js["DefocusV"] is None and js["Voltage"] is None
    back = schema.from_json_record(js)
    assert math.isnan(back["DefocusV"]) and back["ClassNumber"] == 3


def test_coerce_rejects_garbage_naming_the_field():
    with pytest.raises(ValueError, match="DefocusU"):
        schema.coerce("DefocusU", "abc")
    assert schema.effective_pixel_size(1.0, 448, 224) == 2.0
