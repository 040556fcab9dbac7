"""Map timm's state-dict names to the zoo graphs' and record timm's outputs as a reference.

The same mechanism as benchmarks/make_torchvision_reference.py (whose functions this uses), for the timm models that
compute a zoo graph's function. timm is no dependency of nascore; this runs in the torchvision environment made as
that script's docstring shows, with timm added (version used: timm 1.0.31, beside torch 2.14.1):

    /tmp/nascore-tv/bin/pip install timm==1.0.31
    /tmp/nascore-tv/bin/python benchmarks/make_timm_reference.py

For each model below it builds timm's model (timm.create_model(pretrained=False): nothing is downloaded; every tensor
is then overwritten by tests/zoo/reference_weights.py, a formula of the tensor's timm name) and the zoo graph, pairs
the tensors in order (checking every shape), writes graphs/timm/MODEL.yaml (what `nascore import timm MODEL` loads;
MODEL is timm's name), prints the largest difference of the two outputs in float32 and float64 (0 is exact), and
writes timm's float64 outputs to tests/zoo/data/timm_reference.json, which tests/zoo/test_timm_import.py recomputes
with nascore under the pinned torch.

timm's efficientnet_b0 is torchvision's function (batch-norm eps 1e-5, symmetric padding, SE of input channels / 4
with SiLU, like torchvision's); its mobilenetv3_large_100 is not (eps 1e-5 where torchvision has 1e-3), so it maps to
graphs/mobilenetv3_large_100.yaml. Left out: tf_efficientnet_b0 and tf_mobilenetv3_large_100 (TensorFlow "same"
padding, asymmetric at stride 2, which no zoo block has, and eps 1e-3); squeezenet, shufflenet and googlenet (timm
has none).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.make_torchvision_reference import record_all  # noqa: E402

FIXTURE = ROOT / "tests" / "zoo" / "data" / "timm_reference.json"
INCEPTION_NOTE = ("timm's inception_v3 weights expect input normalised with mean 0.5 and std 0.5 per channel "
                  "(their pretrained_cfg); the zoo graph takes that input.")

# timm model: (zoo graph, timm.create_model arguments, prefixes of tensors the zoo graph leaves out, input side, note)
MODELS = {
    "resnet18": ("resnet18", {}, (), 64, None),
    "resnet50": ("resnet50", {}, (), 64, None),
    "resnext50_32x4d": ("resnext50_32x4d", {}, (), 64, None),
    "seresnet50": ("se_resnet50", {}, (), 64, None),
    "densenet121": ("densenet121", {}, (), 64, None),
    "mobilenetv2_100": ("mobilenet_v2", {}, (), 64, None),
    "efficientnet_b0": ("efficientnet_b0", {}, (), 64, None),
    "mobilenetv3_large_100": ("mobilenetv3_large_100", {}, (), 64, None),
    # timm's inception_v3.tv_in1k file holds the auxiliary head (aux_logits=True keeps it); the graph leaves it out
    "inception_v3": ("inception_v3", {"aux_logits": True}, ("AuxLogits.",), 75, INCEPTION_NOTE),
}


def main() -> None:
    import timm

    def builder(name: str, kwargs: dict):
        def build():
            model = timm.create_model(name, pretrained=False, **kwargs).eval()
            if kwargs.get("aux_logits"):
                model.aux_logits = False   # the head's tensors stay in the state dict; forward gives the logits only
            return model
        return build

    record_all("timm", timm.__version__,
               {name: (builder(name, kwargs), graph, ignore, side, note, f"timm.create_model('{name}')")
                for name, (graph, kwargs, ignore, side, note) in MODELS.items()}, FIXTURE)


if __name__ == "__main__":
    main()
