"""The CVMFS image resolver, the publishing recipe and the client configuration.

No CVMFS client runs here; the resolver is pointed at a local folder laid out like
/cvmfs/unpacked.cern.ch/<registry>/<image>:<tag>.
"""

from __future__ import annotations

import pytest
import yaml

import facility
from facility.cvmfs import CvmfsImageError, cvmfs_path, image_path, recipe_images, resolve
from tests.kube_helpers import ROOT, SITE_EXAMPLE, publish, site_raw, with_local_cvmfs

pytestmark = pytest.mark.no_facility

NOTEBOOK = "registry.example.org/analysis-facility/notebook:2026.9"


def test_resolve_published_image(tmp_path):
    published = publish(tmp_path, NOTEBOOK)
    assert resolve(NOTEBOOK, tmp_path) == published
    assert resolve(NOTEBOOK, str(tmp_path)) == tmp_path / "unpacked.cern.ch" / "registry.example.org" / (
        "analysis-facility/notebook:2026.9"
    )


def test_resolve_unpublished_image_fails_clearly(tmp_path):
    publish(tmp_path, NOTEBOOK)
    other = "registry.example.org/analysis-facility/notebook:2027.1"
    with pytest.raises(CvmfsImageError, match=r"notebook:2027.1 is not published on CVMFS: .* does not exist"):
        resolve(other, tmp_path)


def test_resolve_without_repository_or_mount(tmp_path):
    with pytest.raises(CvmfsImageError, match="is the repository mounted"):
        resolve(NOTEBOOK, tmp_path)
    with pytest.raises(CvmfsImageError, match=f"CVMFS is not mounted at {tmp_path / 'absent'}"):
        resolve(NOTEBOOK, tmp_path / "absent")


@pytest.mark.parametrize(
    "reference",
    ["notebook", "registry.example.org/notebook", "../../etc/passwd:1", "registry.example.org/a/../../x:1", "a b/c:1"],
)
def test_malformed_references_are_refused(tmp_path, reference):
    with pytest.raises(CvmfsImageError, match="is not an image reference"):
        resolve(reference, tmp_path)


def test_facility_aware_helper_uses_cvmfs_root(tmp_path):
    fac = facility.from_dict(with_local_cvmfs(site_raw(), tmp_path))
    assert image_path(fac, "coffea-2026") == tmp_path / "unpacked.cern.ch" / NOTEBOOK
    assert image_path(fac, fac.image("coffea-2026-gpu")).name == "notebook-gpu:2026.9"
    with pytest.raises(CvmfsImageError, match="no image named 'root-6'; known: coffea-2026, coffea-2026-gpu"):
        image_path(fac, "root-6")


def test_facility_image_with_explicit_cvmfs_path(tmp_path):
    raw = site_raw()
    raw["images"][0]["cvmfs"] = str(tmp_path / "elsewhere")
    fac = facility.from_dict(raw)
    with pytest.raises(CvmfsImageError, match="its cvmfs path .*elsewhere does not exist"):
        image_path(fac, "coffea-2026")
    assert image_path(fac, "coffea-2026", check=False) == tmp_path / "elsewhere"
    (tmp_path / "elsewhere").mkdir()
    assert image_path(fac, "coffea-2026") == tmp_path / "elsewhere"


def test_default_root_is_slash_cvmfs():
    fac = facility.load(SITE_EXAMPLE)
    assert image_path(fac, "coffea-2026", check=False) == cvmfs_path(NOTEBOOK, "/cvmfs")


def test_recipe_publishes_every_image_of_the_example_and_the_worker_image():
    published = set(recipe_images(ROOT / "cvmfs" / "recipe.yaml"))
    for path in (SITE_EXAMPLE, facility.embedded_default_path()):
        for image in facility.load(path).images:
            assert image.registry in published, f"{image.registry} of {path.name} is missing from cvmfs/recipe.yaml"
    built = {
        yaml.safe_load((ROOT / "images" / "images.yaml").read_text())[name]["reference"]
        for name in ("notebook", "dask-worker")
    }
    assert built <= published


def test_recipe_with_a_bad_entry_is_refused(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("version: 1\ncvmfs_repo: unpacked.cern.ch\ninput: ['https://registry.example.org/x']\n")
    with pytest.raises(CvmfsImageError, match="'registry.example.org/x' is not an image reference"):
        recipe_images(recipe)
    recipe.write_text("version: 1\ncvmfs_repo: sft.cern.ch\ninput: []\n")
    with pytest.raises(CvmfsImageError, match="not a DUCC recipe for unpacked.cern.ch"):
        recipe_images(recipe)


def test_client_configuration_lists_unpacked_repository():
    settings = {}
    for line in (ROOT / "cvmfs" / "default.local").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    assert "unpacked.cern.ch" in settings["CVMFS_REPOSITORIES"].split(",")
    assert settings["CVMFS_HTTP_PROXY"]
