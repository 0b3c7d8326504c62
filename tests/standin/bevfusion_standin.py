#!/usr/bin/env python3
"""A stand-in for `bevfusion` in nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt (no GPU, no mmdet3d).

It behaves as docs/container-contract.md describes the real container, so the plugin's launch,
parsing and verdict code meet the same traps: a launcher that always exits 0 and prints an
`Execution status: PASS|FAIL` footer on stderr, a worker process (torchrun's child), `\\r`-glued
progress records, status.json lines in the 5.5 shapes, epoch_<N>.pth + last_checkpoint, convert's
results_dir == root_dir quirk, and 5.5's spec-surface errors. It trains nothing.

Fault injection (env FAKE_TAO_FAULT): fail_at_iter | post_eval_segv | worker_sigkill | interrupt |
no_mmdet3d | oom | long_log_line (one FAKE_TAO_LONG_MB-sized stdout line, default 64, at train start) |
long_status_record (one 40 MB status.json record at train start and one after epoch 1's validation).
FAKE_TAO_ITER_SECONDS sets the time per iteration (default 0.02). FAKE_TAO_FAIL_LR_ABOVE=x
makes train fail like fail_at_iter (CUDA out of memory) only when train.optimizer.lr > x.
FAKE_TAO_NAN_FROM_EPOCH=N makes the train loss NaN from epoch N on (a diverging run; it trains on, as 5.5 does);
with FAKE_TAO_NAN_LR_ABOVE=x only when train.optimizer.lr > x (one diverging trial among healthy ones).
FAKE_TAO_KILL_ONCE_AT_EPOCH=N kills the whole container (exit 137, no footer, as a lost node or an engine
restart would) right after the epoch-N checkpoint, but only on a fresh start: a resumed run trains to the end.
FAKE_TAO_HOLD_FILE=<container path>: train waits before its first iteration while that file exists (at most
FAKE_TAO_HOLD_SECONDS, default 120), so a test decides how long a run lasts instead of guessing a duration.

Validation AP (train, and evaluate of a train checkpoint) depends on the epoch and on
train.optimizer.lr / weight_decay, so a hyperparameter search has a known optimum (lr 3e-4, wd 1e-2):

    q(lr, wd) = exp(-0.5 * (log10(lr / 3e-4) / 0.5) ** 2 - 0.5 * (log10(wd / 1e-2) / 0.75) ** 2)
    f(lr, wd) = (0.25 + 0.75 * q(lr, wd)) / (0.25 + 0.75 * q(2e-4, 1e-2))
    AP11 = round(base11(epoch) * f, 4), AP40 = round(base40(epoch) * f, 4)

base11/base40 = 10 + 7.5 * epoch / 8 + 7 * epoch (or the FAKE_TAO_BEST_EPOCH peak). f is exactly 1 at
the 5.5 defaults (lr 2e-4, wd 0.01), so default runs score as before; about 1.047 at the optimum.
Checkpoints record lr and weight_decay so evaluate scores them the same way.
Uses only the standard library plus PyYAML (both present in the stand-in image).
"""

import datetime
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import traceback

SUBTASKS = ("convert", "train", "evaluate", "inference")
NEWER = {"model_name": "ExperimentConfig", "wandb.group": "WandBConfig", "wandb.run_id": "WandBConfig",
         "train.checkpoint_interval_unit": "TrainConfig", "train.checkpointer": "TrainConfig",
         "evaluate.trt_engine": "EvaluateConfig", "evaluate.batch_size": "EvaluateConfig",
         "inference.trt_engine": "InferenceConfig", "inference.batch_size": "InferenceConfig"}
PROGRESS = re.compile(r"Epoch \d+: \s*\d+%|\[.*\]")  # the 5.5 launcher's progress-bar regex (§1.2)
FAULT = os.environ.get("FAKE_TAO_FAULT", "")
# Only global rank 0 writes status.json and checkpoints (contract §9.2); other nodes of a multi-node job run too.
KILLED_FROM_OUTSIDE = 37  # the worker's way of telling the launcher to die like a killed container
RANK0 = os.environ.get("PET_NODE_RANK", "0") in ("", "0")


def tao_log(level, message):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    sys.stderr.write(f"[{stamp} - TAO Toolkit - root - {level}] {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- launcher (entrypoint.py:launch)
def launcher(argv):
    if len(argv) < 1 or argv[0] not in SUBTASKS:
        sys.stderr.write(f"usage: bevfusion [-h] {{{','.join(SUBTASKS)}}} ...\nbevfusion: error: invalid choice\n")
        return 2
    subtask, rest = argv[0], argv[1:]
    if "-e" not in rest and "--experiment_spec_file" not in rest:
        print(f"ERROR: The subtask `{subtask}` requires the following argument: -e/--experiment_spec_file")
        return 1
    flag = "-e" if "-e" in rest else "--experiment_spec_file"
    spec = rest[rest.index(flag) + 1] if rest.index(flag) + 1 < len(rest) else ""
    if not os.path.isfile(spec):
        print(f"ERROR: The indicated experiment spec file `{spec}` doesn't exist!")
        return 1
    if os.environ.get("JOB_ID"):
        try:
            open(f"/{os.environ['JOB_ID']}.txt", "a").close()
        except PermissionError:
            traceback.print_exc()
            return 1
    if FAULT == "no_mmdet3d":
        sys.stderr.write("Traceback (most recent call last):\n  File \"/usr/local/bin/bevfusion\", line 5\n"
                         "ModuleNotFoundError: No module named 'mmdet3d'\n")
        tao_log("WARNING", "Execution status: FAIL")
        return 0
    print(f"torchrun --nproc_per_node=1 --nnodes=1 {subtask}.py --config-path {os.path.dirname(spec)} "
          f"--config-name {os.path.basename(spec)}")
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", subtask, spec],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    for raw in iter(child.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        if "\r" in line or PROGRESS.search(line):
            sys.stdout.write("\r" + line.strip())  # progress records: no newline (entrypoint.py L235-239)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    code = child.wait()
    if code == KILLED_FROM_OUTSIDE and os.environ.get("FAKE_TAO_KILL_ONCE_AT_EPOCH"):
        os._exit(137)  # the container dies with its process tree: no footer, exit 137 (SIGKILL)
    if code < 0:
        name = signal.Signals(-code).name
        print(f"\nE torch.distributed.elastic.multiprocessing.api: failed (exitcode: {code}) local_rank: 0 "
              f"(pid: {child.pid}) of binary: {sys.executable}")
        print(f"torch.distributed.elastic.multiprocessing.errors.ChildFailedError: Signal {-code} ({name}) "
              f"received by PID {child.pid}")
    if os.environ.get("TELEMETRY_OPT_OUT", "no").lower() in ("no", "false", "0"):
        tao_log("INFO", "Telemetry data couldn't be sent, but the command ran successfully.")
        tao_log("INFO", "[Error]: 403 Client Error: Forbidden for url: https://telemetry.example/api")
    tao_log("INFO" if code == 0 else "WARNING", f"Execution status: {'PASS' if code == 0 else 'FAIL'}")
    return 0  # 5.5's main() ignores launch()'s result


# ---------------------------------------------------------------- worker (scripts/<subtask>.py)
class Status:
    def __init__(self, path):
        self.path = path if RANK0 else os.devnull
        self.dir = os.path.dirname(path)
        self.sticky = {}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            print(f"Log file already exists at {path}")

    def write(self, status, message=None, data=None):
        now = datetime.datetime.now()
        rec = dict(data or {})
        rec.update(date=f"{now.month}/{now.day}/{now.year}", time=f"{now.hour}:{now.minute}:{now.second}",
                   status=status, verbosity="INFO")
        if message is not None:
            rec["message"] = message
        rec.update(self.sticky)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()


class SpecError(Exception):
    pass


def get(spec, path, default=None):
    cur = spec
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def compose(spec_path):
    """Hydra composition checks: errors here write no status.json line (§2.1)."""
    import yaml

    with open(spec_path) as fh:
        spec = yaml.safe_load(fh) or {}
    for key, cls in NEWER.items():
        if get(spec, key) is not None or (key in spec):
            leaf = key.split(".")[-1]
            raise SpecError(f"Error merging '{os.path.basename(spec_path)}' with schema\n"
                            f"Key '{leaf}' not in '{cls}'")
    for key in ("evaluate.checkpoint", "inference.checkpoint", "results_dir"):
        if key in ("evaluate.checkpoint", "inference.checkpoint") and get(spec, key.split(".")[0]) is None:
            continue
        if get(spec, key, "absent") is None:
            raise SpecError(f"ValidationError: Incompatible value 'None' for field of type 'str'\n    full_key: {key}")
    return spec


def status_path(spec, subtask):
    if subtask == "convert":
        return os.path.join(spec.get("results_dir") or "/data/", "status.json")
    action_dir = get(spec, f"{subtask}.results_dir")
    if action_dir:
        return os.path.join(action_dir, "status.json")
    if not spec.get("results_dir"):
        raise SpecError("ValueError: You need to set at least one of following fields: results_dir, "
                        "{mode}.results_dir")
    return os.path.join(spec["results_dir"], subtask, "status.json")


def read_ids(root, split):
    path = os.path.join(root, "ImageSets", f"{split}.txt")
    with open(path) as fh:
        return [f"{int(line):06d}" for line in fh.read().splitlines()]


def do_convert(spec, st):
    root, out = spec.get("root_dir", "/data/"), spec.get("results_dir", "/data/")
    mode = spec.get("mode", "training")
    splits = {"training": ["train", "val"], "validation": ["val"], "testing": ["test"]}[mode]
    ids = {s: read_ids(root, s) for s in ("train", "val", "test")}  # all three are opened in every mode
    folder = "testing" if mode == "testing" else "training"
    for split in splits:
        for fid in ids[split]:
            for sub, ext in (("velodyne", "bin"), ("image_2", "png"), ("calib", "txt")) + (
                    (("label_2", "txt"),) if mode != "testing" else ()):
                rel = f"{folder}/{sub}/{fid}.{ext}"
                if not os.path.exists(os.path.join(root, rel)):
                    raise ValueError(f"file not exist: {rel}")
    prefix = spec.get("output_prefix") or "kitti_person"
    written = splits + (["trainval"] if mode == "training" else [])
    for split in written:
        frames = ids["train"] + ids["val"] if split == "trainval" else ids[split]
        info = {"metainfo": {"categories": {"person": 0}}, "data_list": [
            {"sample_idx": int(f), "lidar_points": {"lidar_path": f"{f}.bin"},
             "images": {"CAM2": {"img_path": f"{f}.png"}}} for f in frames]}
        with open(os.path.join(out, f"{prefix}_infos_{split}.pkl"), "wb") as fh:
            pickle.dump(info, fh)
    print("create reduced point cloud for training set")
    for split in splits:
        pkl = os.path.join(root, f"{prefix}_infos_{split}.pkl")
        if not os.path.exists(pkl):
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{pkl}'")
        reduced = os.path.join(root, folder, "velodyne_reduced")
        os.makedirs(reduced, exist_ok=True)
        for fid in ids[split]:
            with open(os.path.join(root, folder, "velodyne", f"{fid}.bin"), "rb") as src:
                data = src.read()
            with open(os.path.join(reduced, f"{fid}.bin"), "wb") as dst:
                dst.write(data[: len(data) // 32 * 16])  # stands in for the camera-frustum crop
    st.write("RUNNING", "Dataset convert finished successfully")


def load_split(spec, split):
    ds = spec.get("dataset", {})
    ann = get(ds, f"{split}.ann_file")
    if not ann:
        raise ValueError("ann_file for train_dataset and val_dataset must be provided")
    if not os.path.exists(ann):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{ann}'")
    with open(ann, "rb") as fh:
        info = pickle.load(fh)
    prefix = get(ds, f"{split}.data_prefix", {}) or {}
    pts, img = prefix.get("pts", "training/lidar_reduced"), prefix.get("img", "training/images/")
    cam = ds.get("default_cam_key", "CAM0")
    for item in info["data_list"]:
        if cam not in item["images"]:
            raise KeyError(f"'{cam}'")
        for rel in (os.path.join(pts, item["lidar_points"]["lidar_path"]),
                    os.path.join(img, item["images"][cam]["img_path"])):
            full = os.path.join(ds.get("root_dir", "/data/"), rel)
            if not os.path.exists(full):
                raise FileNotFoundError(f"[Errno 2] No such file or directory: '{full}'")
    if ds.get("classes", ["person"]) != ["person"]:
        raise ValueError("tuple.index(x): x not in tuple")
    return info["data_list"]


def init_weights(spec):
    cfg = get(spec, "model.img_backbone.init_cfg", "absent")
    if cfg == "absent" or (isinstance(cfg, dict) and str(cfg.get("checkpoint", "https://")).startswith("http")):
        print("Downloading: \"https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
              "swin_tiny_patch4_window7_224.pth\"")
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    if isinstance(cfg, dict) and cfg.get("checkpoint") and not os.path.exists(cfg["checkpoint"]):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{cfg['checkpoint']}'")


def metric_lines(ap11, ap40):
    names = []
    for kind in ("3D", "BEV", "2D"):
        for ap, val in (("11", ap11), ("40", ap40)):
            for diff, scale in (("easy", 1.1), ("moderate", 1.0), ("hard", 0.9)):
                for ov in ("strict", "loose"):
                    v = val * scale * (1.0 if ov == "strict" else 1.2)
                    names.append(f"TAO3D metric/pred_instances_3d/TAO3D/person_{kind}_AP{ap}_{diff}_{ov}: {v:.4f}")
    return names


DEFAULT_LR, DEFAULT_WD, BEST_LR, BEST_WD = 2e-4, 1e-2, 3e-4, 1e-2


def hp_quality(lr, wd):
    """The smooth bump of the docstring, 1.0 at (BEST_LR, BEST_WD)."""
    return math.exp(-0.5 * (math.log10(lr / BEST_LR) / 0.5) ** 2 - 0.5 * (math.log10(wd / BEST_WD) / 0.75) ** 2)


def hp_factor(lr=None, wd=None):
    lr = DEFAULT_LR if lr is None else float(lr)
    wd = DEFAULT_WD if wd is None else float(wd)
    if lr <= 0 or wd <= 0:
        return 0.25 / (0.25 + 0.75 * hp_quality(DEFAULT_LR, DEFAULT_WD))
    return (0.25 + 0.75 * hp_quality(lr, wd)) / (0.25 + 0.75 * hp_quality(DEFAULT_LR, DEFAULT_WD))


def val_ap(epoch, lr=None, wd=None):
    best = int(os.environ.get("FAKE_TAO_BEST_EPOCH", "0"))
    f = hp_factor(lr, wd)
    if best:
        return round((40.0 - 5.0 * abs(epoch - best)) * f, 4), round((38.0 - 5.0 * abs(epoch - best)) * f, 4)
    return round((10.0 + 7.5 * epoch) * f, 4), round((8.0 + 7.0 * epoch) * f, 4)


def do_train(spec, st):
    train = spec.get("train", {})
    resume_path = train.get("resume_training_checkpoint_path")
    if resume_path == "":
        raise FileNotFoundError("checkpoint '' does not exist (load_from='')")
    frames = load_split(spec, "train_dataset")
    load_split(spec, "val_dataset")
    init_weights(spec)
    epochs = int(train.get("num_epochs", 10))
    start = 0
    if resume_path:
        with open(resume_path) as fh:
            saved = json.load(fh)
        if train.get("resume"):
            start = int(saved["epoch"])
            print(f"resumed epoch: {start}, iter: {saved.get('iter', 0)}")
        else:
            print(f"Load checkpoint from {resume_path}")
    work = st.dir
    _long_output(st)
    _hold()
    run_dir = os.path.join(work, time.strftime("%Y%m%d_%H%M%S"))
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, os.path.basename(run_dir) + ".log"), "a") as log:
        _train_loop(spec, st, train, frames, start, epochs, work, log)
    st.write("RUNNING", "Train finished successfully.")


def _hold():
    path = os.environ.get("FAKE_TAO_HOLD_FILE")
    end = time.monotonic() + float(os.environ.get("FAKE_TAO_HOLD_SECONDS", "120"))
    while path and os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.1)


def _long_output(st):
    if FAULT == "long_log_line":
        size = int(os.environ.get("FAKE_TAO_LONG_MB", "64")) << 20
        block = b"x" * (1 << 20)
        sys.stdout.flush()
        for _ in range(size >> 20):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b" END-OF-THE-LONG-LINE\nafter the long line\n")
        sys.stdout.flush()
    if FAULT == "long_status_record":
        st.write("RUNNING", "y" * (40 << 20))


def _train_loop(spec, st, train, frames, start, epochs, work, log):
    bs = int(get(spec, "dataset.train_dataset.batch_size", 4))
    repeat = int(get(spec, "dataset.train_dataset.repeat_time") or 1)
    per_epoch = (len(frames) * repeat) // (bs * int(train.get("num_gpus", 1)))
    step = float(os.environ.get("FAKE_TAO_ITER_SECONDS", "0.02"))
    ckpt_int, val_int = int(train.get("checkpoint_interval", 1)), int(train.get("validation_interval", 1))
    log_int = int(train.get("logging_interval", 1))
    cur = start * per_epoch
    for epoch in range(start + 1, epochs + 1):
        for i in range(1, per_epoch + 1):
            cur += 1
            time.sleep(step)
            loss = round(6.5 / math.sqrt(cur), 4)
            nan_from = int(os.environ.get("FAKE_TAO_NAN_FROM_EPOCH", "0") or 0)
            nan_lr = os.environ.get("FAKE_TAO_NAN_LR_ABOVE")
            if nan_lr and float(get(spec, "train.optimizer.lr", 0)) <= float(nan_lr):
                nan_from = 0
            if nan_from and epoch >= nan_from:
                loss = float("nan")
            lr = round(2e-4 * (0.5 + 0.5 * math.cos(math.pi * (epoch - 1) / epochs)), 10)
            eta = str(datetime.timedelta(seconds=int((epochs * per_epoch - cur) * step)))
            line = (f"Epoch(train)  [{epoch}][{i:>3}/{per_epoch}]  lr: {lr:.4e}  eta: {eta}  "
                    f"time: {step:.4f}  loss: {loss:.4f}  matched_ious: 0.1486")
            print(line, flush=True)
            log.write(line + "\n")
            fail_lr = os.environ.get("FAKE_TAO_FAIL_LR_ABOVE")  # one failing trial among healthy ones
            if (FAULT == "fail_at_iter" or (fail_lr and float(get(spec, "train.optimizer.lr", 0)) > float(fail_lr))) \
                    and cur == 2:
                raise RuntimeError(os.environ.get("FAKE_TAO_ERROR_TEXT") or  # a test's own error line
                                   "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)")
            if FAULT == "oom" and cur == 2:
                hog = []
                while True:  # the container's memory limit makes the kernel OOM-kill us
                    hog.append(bytearray(64 * 1024 * 1024))
            if FAULT == "interrupt" and cur == 2:
                raise KeyboardInterrupt
            if cur % log_int == 0:
                st.sticky["graphical"] = {"loss": loss, "matched_ious": 0.1486}
                st.write("RUNNING", data={"mode": "train", "cur_iter": cur, "time_per_iter": f"00:00:0{step}",
                                          "eta": eta, "lr": lr, "loss": loss, "matched_ious": 0.1486})
        if RANK0 and (epoch % ckpt_int == 0 or epoch == epochs):
            path = os.path.join(work, f"epoch_{epoch}.pth")
            with open(path, "w") as fh:
                json.dump({"epoch": epoch, "iter": cur, "meta": "stand-in checkpoint",
                           "lr": get(spec, "train.optimizer.lr"),
                           "weight_decay": get(spec, "train.optimizer.weight_decay")}, fh)
            with open(os.path.join(work, "last_checkpoint"), "w") as fh:
                fh.write(path)
            print(f"Saving checkpoint at {epoch} epochs")
        kill_at = int(os.environ.get("FAKE_TAO_KILL_ONCE_AT_EPOCH", "0") or 0)
        if kill_at and epoch == kill_at and not train.get("resume"):
            print(f"killed after the epoch {epoch} checkpoint (FAKE_TAO_KILL_ONCE_AT_EPOCH)", flush=True)
            os._exit(KILLED_FROM_OUTSIDE)
        if FAULT == "worker_sigkill" and epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if epoch % val_int == 0 or epoch == epochs:
            ap11, ap40 = val_ap(epoch, get(spec, "train.optimizer.lr"), get(spec, "train.optimizer.weight_decay"))
            for m in metric_lines(ap11, ap40):
                print(m)
            line = f"Epoch(val) [{epoch}][1/1]    " + "  ".join(metric_lines(ap11, ap40)[:4])
            print(line)
            log.write(line + "\n")
            st.sticky["kpi"] = {"AP40": ap40, "AP11": ap11}
            st.write("RUNNING", data={"mode": "val", "epoch": epoch, "AP40": ap40, "AP11": ap11})
            if epoch == 1 and FAULT == "long_status_record":
                _long_output(st)


def _checkpoint(spec, action):
    ckpt = get(spec, f"{action}.checkpoint")
    if not os.path.exists(ckpt):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{ckpt}'")
    with open(ckpt) as fh:
        return json.load(fh)


def do_evaluate(spec, st):
    if not get(spec, "dataset.test_dataset.ann_file"):
        raise ValueError("ann_file for test_dataset must be provided for evaluation")
    frames = load_split(spec, "test_dataset")
    saved = _checkpoint(spec, "evaluate")
    st.write("STARTED", "********************** Start BEVFusion Evaluation **********************.")
    ap11, ap40 = val_ap(int(saved["epoch"]), saved.get("lr"), saved.get("weight_decay"))
    print(f"Evaluating {len(frames)} frames")
    print("Results of pred_instances_3d:")
    print("person AP@0.50, 0.50, 0.50:")
    lines = metric_lines(ap11, ap40)
    for m in lines:
        print(m)
    print(f"Epoch(test) [{len(frames)}/{len(frames)}]    " + "  ".join(lines))
    st.write("RUNNING", "********************** Completed BEVFusion Evaluation **********************.")
    st.write("RUNNING", "Evaluate finished successfully.")
    if FAULT == "post_eval_segv":
        print("Fatal Python error: Segmentation fault\n\nThread 0x00007f (most recent call first):\n"
              "  File \"numba/cuda/cudadrv/driver.py\", line 1, in cuMemRetainAllocationHandle", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)


def _inv4(m):
    """Gauss-Jordan inverse of a 4x4 list matrix (the stand-in image has no numpy)."""
    a = [row[:] + [float(i == j) for j in range(4)] for i, row in enumerate(m)]
    for c in range(4):
        piv = max(range(c, 4), key=lambda r: abs(a[r][c]))
        a[c], a[piv] = a[piv], a[c]
        a[c] = [v / a[c][c] for v in a[c]]
        for r in range(4):
            if r != c:
                a[r] = [vr - a[r][c] * vc for vr, vc in zip(a[r], a[c], strict=True)]
    return [row[4:] for row in a]


def _standin_preds(split_root, stem):
    """5.5-shaped preds: the frame's Pedestrian labels as LiDAR boxes (x, y, z_bottom, l, w, h, 0, 0, yaw)
    with a small deterministic jitter, plus one low-score false positive."""
    import random

    rng = random.Random(stem)
    boxes, scores = [], []
    calib, label = (os.path.join(split_root, d, f"{stem}.txt") for d in ("calib", "label_2"))
    if os.path.isfile(calib) and os.path.isfile(label):
        rows = {}
        with open(calib) as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                rows[key.strip()] = [float(v) for v in rest.split()]
        r0, tr = rows["R0_rect"], rows["Tr_velo_to_cam"]
        r0_4 = [[*r0[0:3], 0.0], [*r0[3:6], 0.0], [*r0[6:9], 0.0], [0.0, 0.0, 0.0, 1.0]]
        tr_4 = [tr[0:4], tr[4:8], tr[8:12], [0.0, 0.0, 0.0, 1.0]]
        l2c = [[sum(r0_4[i][k] * tr_4[k][j] for k in range(4)) for j in range(4)] for i in range(4)]
        c2l = _inv4(l2c)
        with open(label) as fh:
            for line in fh:
                v = line.split()
                if not v or v[0] != "Pedestrian":
                    continue
                h, w, length, x, y, z, ry = (float(t) for t in v[8:15])
                p = [sum(c2l[i][k] * q for k, q in enumerate((x, y, z, 1.0))) for i in range(3)]
                d = [c2l[i][0] * math.cos(ry) - c2l[i][2] * math.sin(ry) for i in range(2)]
                boxes.append([p[0] + rng.uniform(-0.15, 0.15), p[1] + rng.uniform(-0.15, 0.15), p[2],
                              length, w, h, 0.0, 0.0, math.atan2(d[1], d[0]) + rng.uniform(-0.1, 0.1)])
                scores.append(round(rng.uniform(0.75, 0.95), 4))
    boxes.append([rng.uniform(15.0, 30.0), rng.uniform(-8.0, 8.0), -1.6, 0.6, 0.6, 1.7, 0.0, 0.0, 0.0])
    scores.append(round(rng.uniform(0.1, 0.3), 4))
    return {"labels_3d": [0] * len(boxes), "scores_3d": scores, "bboxes_3d": boxes}


def do_inference(spec, st):
    if not get(spec, "dataset.test_dataset.ann_file"):
        raise ValueError("All four values: lidar2cam, cam2img, img_file, pc_file must be set")
    frames = load_split(spec, "test_dataset")
    _checkpoint(spec, "inference")
    st.write("RUNNING", "**********************Start logging for Inference**********************.")
    out = os.path.join(os.path.dirname(st.path), "preds")
    os.makedirs(out, exist_ok=True)
    ds = spec.get("dataset", {})
    split_dir = os.path.dirname((get(ds, "test_dataset.data_prefix", {}) or {}).get("pts", "training/x").rstrip("/"))
    for item in frames:
        stem = os.path.splitext(item["lidar_points"]["lidar_path"])[0]
        with open(os.path.join(out, f"{stem}.json"), "w") as fh:
            json.dump(_standin_preds(os.path.join(ds.get("root_dir", "/data/"), split_dir or "training"), stem), fh)
    st.write("RUNNING", "Completed Inference.")
    st.write("RUNNING", "Inference finished successfully.")


def worker(subtask, spec_path):
    try:
        spec = compose(spec_path)
        path = status_path(spec, subtask)
    except Exception as exc:  # composition-time failure: no status.json line
        sys.stderr.write(f"{exc}\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
        return 1
    st = Status(path)
    name = {"convert": "BEVFusion dataset convert", "train": "Bevfusion train", "evaluate": "Bevfusion evaluate",
            "inference": "Bevfusion inference"}[subtask]
    st.write("STARTED", f"Starting {name}" + ("" if subtask == "convert" else "."))
    label = "Dataset convert" if subtask == "convert" else subtask.capitalize()
    try:
        if subtask != "convert":
            for stub, cls in (("evaluate", "EvaluateConfig"), ("inference", "InferenceConfig")):
                if get(spec, f"{stub}.checkpoint", "???") == "???":
                    raise SpecError(f"Structured config of type `{cls}` has missing mandatory value: checkpoint")
            if not get(spec, "input_modality.use_lidar", True):
                raise ValueError("input_modality - use_lidar must be set to True for this model")
        {"convert": do_convert, "train": do_train, "evaluate": do_evaluate, "inference": do_inference}[subtask](
            spec, st)
    except (KeyboardInterrupt, SystemError):
        st.write("FAILURE", f"{label} was interrupted")
        return 0
    except Exception as exc:
        st.write("FAILURE", str(exc))
        traceback.print_exc()
        if isinstance(exc, SpecError):
            sys.stderr.write(f"omegaconf.errors.MissingMandatoryValue: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.exit(launcher(sys.argv[1:]))
