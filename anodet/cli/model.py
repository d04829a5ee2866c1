"""Training-side commands: train, eval, synth and ablate (PyTorch is imported inside them)."""

from __future__ import annotations

from pathlib import Path

import click

from anodet.cli.command import WEIGHTS_HELP, friendly, parse_list, setup_logging
from anodet.config import DEFAULT_PRESET, PRESETS
from anodet.output_guard import model_inputs, refuse_aliases


@click.command("train")
@click.option("--config", "config_name", default=DEFAULT_PRESET, show_default=True,
              help=f"preset ({', '.join(PRESETS)}) or a YAML file")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="dataset folder (MVTec 3D-AD category or folder layout)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="experiment folder")
@click.option("--weights", default="auto", show_default=True,
              help="auto (imagenet for EfficientNet-Lite, none for ResNets), " + WEIGHTS_HELP)
@click.option("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
@click.option("--batch-size", type=int, help="pixel feature vectors per optimisation step")
@click.option("--lr", type=float, help="Adam learning rate")
@click.option("--image-size", type=int, help="model input size (pixels, multiple of 32)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--resume", is_flag=True, help="continue from EXPDIR/checkpoints/last.pt")
@click.option("--new-data", is_flag=True, help="with --resume: continue on other training files than last.pt's")
@click.option("--force", is_flag=True, help="replace an earlier experiment in --out")
@click.option("-v", "--verbose", is_flag=True)
@friendly
def train_cmd(config_name, data, out, weights, epochs, batch_size, lr, image_size, device, resume, new_data, force,
              verbose):
    """Train a detector on normal images only."""
    setup_logging(verbose)
    refuse_aliases({"--out": out}, {"--data": data, "--config": config_name, "--weights": weights},
                   folders=("--out",))
    from anodet import config as cfgmod
    from anodet.experiment import check_experiment_dir
    from anodet.models.backbone import resolve_weights
    from anodet.train import train

    cfg = cfgmod.load(config_name)
    cfg = cfgmod.with_overrides(cfg, "train", epochs=epochs, batch_size=batch_size, lr=lr)
    cfg = cfgmod.with_overrides(cfg, "data", image_size=image_size)
    weights = resolve_weights(cfg.model.backbone, weights)
    if weights == "none":
        click.echo("weights: none -> seeded random init (no pretrained ImageNet weights)", err=True)
    check_experiment_dir(out, resume=resume, force=force)
    res = train(cfg, data, out, weights=weights, device=device, resume=resume, new_data=new_data)
    click.echo(f"trained {cfg.preset} for {res.epochs_run} epochs in {res.seconds:.1f} s "
               f"(best val loss {res.best_val_loss:.5f}; backbone: {res.weights_source})")
    click.echo(f"checkpoint: {res.best_checkpoint}")


@click.command("eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="best.pt from anodet-train (PyTorch)")
@click.option("--model", type=click.Path(path_type=Path), help="exported .onnx or .engine (runtime backends)")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="dataset with a test split")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--save-maps", is_flag=True, help="write every anomaly map (.npy) and maps/index.csv")
@click.option("--no-report", is_flag=True, help="skip the PNG panels and report/index.html")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda (checkpoints)")
@click.option("--backend", default="auto", show_default=True, help="runtime backend for --model")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="replace an earlier evaluation in --out")
@friendly
def eval_cmd(checkpoint, model, data, out, save_maps, no_report, device, backend, batch, force):
    """Image AUROC, pixel AUROC, AU-PRO and a visual report on the test split."""
    setup_logging(False)
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.experiment import check_fresh_output

    refuse_aliases({"--out": out}, {"--checkpoint": checkpoint, **model_inputs(model), "--data": data},
                   folders=("--out",))
    check_fresh_output(out, ("metrics.json", "report", "maps"), force=force)

    mut = open_model(checkpoint, model, device=device, backend=backend)
    res = evaluate_model(mut, data, out, save_maps=save_maps, report=not no_report, batch=batch)
    click.echo(format_metrics(res))
    click.echo(f"wrote {out}/metrics.json" + ("" if no_report else f" and {out}/report/index.html"))


def format_metrics(res: dict) -> str:
    """A small aligned table of the headline metrics, overall and per defect type."""
    def f(v):
        return "  n/a" if v is None else f"{v:.3f}"

    lines = [f"{'':<12} {'img AUROC':>9} {'px AUROC':>9} {'AU-PRO':>7} {'img F1':>7}"]
    rows = [("overall", res), *sorted(res.get("per_defect", {}).items())]
    for name, r in rows:
        lines.append(f"{name:<12} {f(r.get('image_auroc')):>9} {f(r.get('pixel_auroc')):>9} "
                     f"{f(r.get('au_pro')):>7} {f(r.get('image_f1')):>7}")
    return "\n".join(lines)


@click.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--size", default=256, show_default=True, help="image side, pixels")
@click.option("--train", "n_train", default=60, show_default=True, help="training images")
@click.option("--val", "n_val", default=15, show_default=True, help="validation images")
@click.option("--test", "n_test", default=10, show_default=True, help="test images per type")
@click.option("--seed", default=0, show_default=True)
@click.option("--difficulty", type=click.Choice(["standard", "hard"]), default="standard", show_default=True,
              help="standard: the widget (colour, geometry, crack); hard: a rotated brushed bracket with "
                   "shallow dents, thin scratches and chips on D435 depth")
@click.option("--sensor", default=None,
              help="depth camera modelled: ideal (float depth), d435 or d405 (noise, z16 steps, holes); "
                   "default ideal (standard) or d435 (hard)")
@click.option("--dent-depth", metavar="MIN,MAX", help="hard: dent depth range, mm [1,3]")
@click.option("--scratch-contrast", metavar="MIN,MAX", help="hard: scratch albedo change range [0.1,0.2]")
@click.option("--scratch-width", type=float, help="hard: scratch width, px at 256 [1]")
@click.option("--chip-size", metavar="MIN,MAX", help="hard: chip radius range, px at 256 [4,8]")
@click.option("--rotation", type=float, help="hard: in-plane rotation of the part, +- degrees [15]")
@click.option("--force", is_flag=True, help="replace an earlier synthetic dataset in OUT")
@friendly
def synth_cmd(out, size, n_train, n_val, n_test, seed, difficulty, sensor, dent_depth, scratch_contrast,
              scratch_width, chip_size, rotation, force):
    """Write a synthetic RGB-D dataset (MVTec 3D-AD layout) to OUT."""
    from anodet.data.hard_parts import hard_params
    from anodet.data.synthetic import write_dataset

    hard = hard_params(dent_depth_mm=dent_depth, scratch_contrast=scratch_contrast, scratch_width_px=scratch_width,
                       chip_radius_px=chip_size, rotation_deg=rotation)
    if hard is not None and difficulty != "hard":
        raise click.UsageError("--dent-depth, --scratch-*, --chip-size and --rotation need --difficulty hard")
    root = write_dataset(out, size=size, n_train=n_train, n_val=n_val, n_test_per_type=n_test, seed=seed,
                         sensor=sensor, replace=force, difficulty=difficulty, hard=hard)
    click.echo(f"synthetic dataset written to {root}")


@click.command("ablate")
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--weights", default="auto", show_default=True, help="auto (ImageNet for Lite, random init for ResNets), " + WEIGHTS_HELP)
@click.option("--epochs", type=int, help="maximum epochs per preset")
@click.option("--presets", default="rgbd_full,rgb_baseline,rgbd_reduced,rgbd_lite,rgb_lite", show_default=True)
@click.option("--image-size", type=int, help="override the input size of every preset")
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True, help="replace an earlier ablation in --out")
@friendly
def ablate_cmd(data, out, weights, epochs, presets, image_size, device, force):
    """Train and evaluate each preset on the same data; write ablation.md/csv/json."""
    setup_logging(False)
    from anodet.experiment import check_fresh_output

    refuse_aliases({"--out": out}, {"--data": data}, folders=("--out",))
    check_fresh_output(out, ("ablation.json", "ablation.md", "ablation.csv"), force=force)
    from anodet.evaluation.ablation import ablate, format_table

    overrides = {"data": {"image_size": image_size}} if image_size else None
    rows = ablate(data, out, presets=parse_list(presets), weights=weights, epochs=epochs, device=device,
                  overrides=overrides)
    click.echo(format_table(rows))
    click.echo(f"wrote {out}/ablation.md, ablation.csv, ablation.json")
