import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder of a small random-initialised model (N=16, M=24, Mz=16): right shape, untrained.

    Exactness does not depend on training, so the codec's round-trip tests run on these and on any machine.
    """
    import torch

    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(1234)
    model = LcfModel(ModelConfig(N=16, M=24, Mz=16)).eval()
    with torch.no_grad():  # spread the gains so that middle levels code some channels and skip others
        spread = torch.linspace(-2.0, 2.0, model.config.M)
        model.gain.log_gain.mul_(3.0).add_(spread)
        model.gain.log_inv_gain.mul_(3.0).sub_(spread)
    out = tmp_path_factory.mktemp("weights")
    export_model(model, out)
    return out


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from lcf.codec import Codec

    return Codec(tiny_weights)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Modules of many tiny-model runs use it (``pytestmark``): one torch thread is much faster for them than
    several fighting over a loaded machine. Restores the thread count after the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
