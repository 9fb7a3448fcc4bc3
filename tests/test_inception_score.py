"""The Inception Score path (issue 12 item 2) without the internet: the TF-Inception network on torchvision's
skeleton, the sha256 check of its weights file, the `dat.prepare weights` download step, IS in fid.json and in
Table 1. The real TF weights are not on this machine; a randomly initialised network of the same layout, saved
as the published file is (a torchvision-named state dict), stands in where only the code path is checked."""

import hashlib
import json

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torchvision.models.inception import Inception3

from dat import eval_fid, inception, prepare
from dat.metrics import feature_statistics


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A TFInception3 state dict without the BatchNorm batch counters, with non-trivial running statistics."""
    torch.manual_seed(0)
    net = inception.TFInception3()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "weights-inception-test.pth"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_tf_inception_is_torchvisions_network_with_tf_pooling(weights_file, monkeypatch):
    """With torchvision's pooling put back, the forward pass equals torchvision's Inception3 (same weights, eval mode)
    minus the fc bias: the wiring of every block is torchvision's; with TF's pooling the logits differ."""
    path, digest = weights_file
    net = inception.load_is_network(path, digest[:8])
    reference = Inception3(num_classes=1008, aux_logits=False, init_weights=False).eval()
    reference.load_state_dict(torch.load(path, weights_only=True), strict=False)
    x = torch.rand(2, 3, 139, 139) * 2 - 1
    with torch.no_grad():
        want = reference(x) - reference.fc.bias
        tf = net(x)
        monkeypatch.setattr(inception, "_tf_avg_pool", lambda t: torch.nn.functional.avg_pool2d(t, 3, 1, 1))
        monkeypatch.setattr(inception, "_max_pool", lambda t: torch.nn.functional.avg_pool2d(t, 3, 1, 1))
        torchvision_pools = net(x)
    assert tf.shape == (2, inception.IS_CLASSES)
    torch.testing.assert_close(torchvision_pools, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert (tf - want).abs().max() > 1e-2 * want.abs().max()


def test_tf_pooling_averages_inside_the_image_only():
    x = torch.ones(1, 1, 4, 4)
    x[..., 0, 0] = 10.0
    # corner: the 2x2 in-image window (10 + 1 + 1 + 1) / 4, not / 9
    assert inception._tf_avg_pool(x)[0, 0, 0, 0].item() == pytest.approx(13 / 4)
    assert inception._max_pool(x)[0, 0, 1, 1].item() == 10.0


def test_sha256_check_fails_clearly_on_a_wrong_file(weights_file, tmp_path):
    path, digest = weights_file
    assert inception.verify_sha256(path, digest) == digest
    assert inception.verify_sha256(path, digest[:8].upper()) == digest  # the published prefix, any case
    wrong = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    wrong.write_bytes(b"an HTML error page, not weights")
    with pytest.raises(ValueError, match=r"sha256 [0-9a-f]{64} does not match the expected 6726825d \(prefix\)"):
        inception.verify_sha256(wrong, "6726825d")
    with pytest.raises(ValueError, match="does not match"):
        inception.load_is_network(wrong, "6726825d")
    with pytest.raises(ValueError, match="8 to 64 hex digits"):
        inception.verify_sha256(path, "672")
    with pytest.raises(FileNotFoundError, match="download_is_weights"):
        inception.load_is_network(tmp_path / "absent.pth", "6726825d")
    other = tmp_path / "other.pth"  # a state dict of another network is refused by name
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not the TF Inception-v3 weights"):
        inception.load_is_network(other, hashlib.sha256(other.read_bytes()).hexdigest())


def test_prepare_weights_downloads_checks_and_never_keeps_a_wrong_file(weights_file, tmp_path):
    path, digest = weights_file
    out, done = tmp_path / "res/inception/w.pth", tmp_path / "downloads/w.json"
    url = path.as_uri()  # file:// stands in for the GitHub release
    bad = ["weights", "--url", url, "--sha256", "deadbeef", "--out", str(out), "--done", str(done)]
    with pytest.raises(ValueError, match="does not match the expected deadbeef"):
        prepare.main(bad)
    assert not out.exists() and not done.exists() and not list(out.parent.iterdir())  # the partial file is gone
    assert prepare.main(["weights", "--url", url, "--sha256", digest[:8], "--out", str(out), "--done", str(done)]) == 0
    assert out.read_bytes() == path.read_bytes() and json.loads(done.read_text())["sha256"] == digest
    # in place: checked, not downloaded again (no url needed); a wrong file in place is reported, never replaced
    assert prepare.main(["weights", "--sha256", digest, "--out", str(out), "--done", str(done)]) == 0
    out.write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="does not match"):
        prepare.main(["weights", "--url", url, "--sha256", digest[:8], "--out", str(out), "--done", str(done)])
    with pytest.raises(FileNotFoundError, match="no URL"):
        prepare.main(["weights", "--sha256", digest, "--out", str(tmp_path / "x.pth"), "--done", str(done)])


class _PixelFeatures:
    """FID features without a logit head (as the shipped offline weights): the mean colour of each image."""

    has_logits = False
    name = "pixel means (test)"

    def __call__(self, images, batch_size=None):
        return {"features": images.reshape(len(images), -1, images.shape[-1]).mean(1).astype(np.float64),
                "logits": None}


def _eval_fid(tmp_path, monkeypatch, run_json, inception_score):
    """dat.eval_fid samples on 20 real-looking colour images with the given evaluate.fid.inception_score block."""
    monkeypatch.setattr(eval_fid, "load_feature_extractor", lambda kind, device: _PixelFeatures())
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (50, 16, 16, 3), dtype=np.uint8)
    mu, sigma = feature_statistics(_PixelFeatures()(ref)["features"])
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, labels=np.zeros(50, np.int64))
    x = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", x=x, y=np.arange(20) % 10, steps=np.int64(5))
    fid = {"extractor": "auto", **({"inception_score": inception_score} if inception_score is not None else {})}
    run = run_json({"run": "r", "dataset": {"name": "d", "sampling_step_size": 0.2}, "evaluate": {"fid": fid},
                    "sampling": {"seed_final": 2000, "conditional": True}})
    (tmp_path / "run.json").write_text(json.dumps(run))
    out = tmp_path / "fid.json"
    assert eval_fid.main(["samples", "--config", str(tmp_path / "run.json"), "--samples", str(tmp_path / "samples.npz"),
                          "--ref", str(tmp_path / "ref.npz"), "--out", str(out)]) == 0
    return json.loads(out.read_text()), x


def test_fid_json_has_is_when_enabled_and_says_why_not_otherwise(weights_file, tmp_path, monkeypatch, run_json):
    path, digest = weights_file
    on, x = _eval_fid(tmp_path, monkeypatch, run_json, {"enabled": True, "weights": str(path), "sha256": digest[:8]})
    net = inception.load_is_network(path, digest)
    with torch.no_grad():  # independently: PIL bilinear to 299, (x - 128) / 128, softmax, shuffled splits, scipy KL
        p = scipy.special.softmax(net(inception.is_preprocess(x)).double().numpy(), axis=1)
    p = p[np.random.RandomState(2020).permutation(20)]
    per_split = [np.exp(np.mean([scipy.stats.entropy(row, part.mean(0)) for row in part])) for part in np.split(p, 10)]
    assert on["is_mean"] == pytest.approx(np.mean(per_split), rel=1e-6)
    assert on["is_std"] == pytest.approx(np.std(per_split), rel=1e-5, abs=1e-9)
    assert on["is_note"] == "IS over 20 samples, 10 splits" and path.name in on["is_network"]
    assert on["extractor"] == "pixel means (test)"  # FID features unchanged
    for block in (None, {"enabled": False}):  # the offline smoke configuration: no block, or switched off
        off, _ = _eval_fid(tmp_path, monkeypatch, run_json, block)
        assert off["is_mean"] is None and off["is_std"] is None and off["is_network"] is None
        assert "evaluate.fid.inception_score is off" in off["is_note"] and "no Inception logit head" in off["is_note"]
        assert off["fid"] == on["fid"]
    with pytest.raises(ValueError, match="does not match"):  # a wrong file is never used
        _eval_fid(tmp_path, monkeypatch, run_json, {"enabled": True, "weights": str(path), "sha256": "0" * 8})


def _run_dir(root, run, fid):
    """results/{run} with the files a main table reads (docs/formats.md): robust.json, grid.json and ``fid``."""
    d = root / run
    (d / "metrics").mkdir(parents=True)
    meta = {"run": run, "dataset": "cifar10", "seed": 0, "time_s": 1.0, "git_sha": "0" * 40}
    (d / "metrics/robust.json").write_text(json.dumps({
        **meta, "norm": "L2", "eps": 0.5, "eps_str": "0.5", "n_clean": 100, "acc_clean": 0.8,
        "pgd": {"steps": 20, "step_size": 0.0625, "n_examples": 100, "acc_robust": 0.65},
        "autoattack": {"version": "standard", "package": "pyautoattack", "n_examples": 100, "acc_clean": 0.8,
                       "acc_robust": 0.6, "log": []}}))
    (d / "metrics/fid.json").write_text(json.dumps(fid | meta))
    (d / "grid.json").write_text(json.dumps({**meta, "steps_grid": [5], "fid": [fid["fid"]], "chosen_steps": 5,
                                            "step_size": 0.2, "n_samples": 20, "n_ref": 50,
                                            "extractor": fid["extractor"]}))
    return d


def test_table1_shows_is_from_fid_json_and_na_with_the_reason(weights_file, tmp_path, monkeypatch, run_json):
    from dat import report

    path, digest = weights_file
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on, _ = _eval_fid(tmp_path / "on", monkeypatch, run_json, {"enabled": True, "weights": str(path), "sha256": digest[:8]})
    off, _ = _eval_fid(tmp_path / "off", monkeypatch, run_json, {"enabled": False})
    rows = [{"label": label, "run_dir": str(_run_dir(tmp_path / "results", run, fid))}
            for label, run, fid in (("Standard AT", "c10_at", off), ("DAT", "c10_dat", on))]
    spec = tmp_path / "table1.spec.json"
    spec.write_text(json.dumps({"kind": "main", "dataset_label": "CIFAR-10", "rows": rows}))
    tex, csv_path = tmp_path / "table1.tex", tmp_path / "table1.csv"
    assert report.main(["table", "--spec", str(spec), "--out-tex", str(tex), "--out-csv", str(csv_path)]) == 0
    text = tex.read_text()
    fid_cell = r"{:.2f} {{\scriptsize[{:.2f}, {:.2f}]}}".format  # the FID and its jackknife interval
    assert f"DAT & 80.00 & 60.00 & {on['is_mean']:.2f} & {fid_cell(on['fid'], on['fid_lo'], on['fid_hi'])} & 5" in text
    assert f"Standard AT & 80.00 & 60.00 & n/a & {fid_cell(off['fid'], off['fid_lo'], off['fid_hi'])} & 5" in text
    assert r"IS n/a: ``IS not computed: evaluate.fid.inception\_score is off" in text
