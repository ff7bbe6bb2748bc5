"""The CUDA path: training and dense inference on a GPU agree with the CPU. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.synthetic import make_toy_volume

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_training_on_cuda_learns_and_keeps_the_model_on_the_gpu(tmp_path):
    from napari_hypseg.core.training import train

    config = get_preset("fast", steps=20, batch_size=16)
    trained = run_to_completion(train([make_toy_volume(0).image], config, checkpoint_path=tmp_path / "m.pt",
                                      device="cuda"))
    assert trained.device.type == "cuda" and next(trained.model.parameters()).is_cuda
    losses = [entry["total"] for entry in trained.history]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_cuda_inference_matches_the_cpu():
    from napari_hypseg.core.inference import latent_field
    from napari_hypseg.core.model import HypsegVAE
    from napari_hypseg.core.normalization import IntensityStats

    image = make_toy_volume(1).image[:30, :34, :38].copy()
    config = get_preset("fast")
    torch.manual_seed(0)
    model = HypsegVAE(config)
    stats = IntensityStats.fit([image])
    fields = {device: run_to_completion(latent_field(model, image, stats, tile=24, device=device,
                                                     precision="float32")) for device in ("cpu", "cuda")}
    np.testing.assert_allclose(fields["cuda"], fields["cpu"], atol=1e-3)
