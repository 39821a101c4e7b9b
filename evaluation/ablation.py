"""The paper's quality/latency levers side by side on one prompt set (arXiv 2401.04577 §3.3-3.4, Fig. 2, Tab. 5-6):

    python evaluation/ablation.py --magnet MAGNET_CKPT --ar AR_CKPT [--hybrid HYBRID_MAGNET_CKPT] \\
        --prompts PROMPTS --reference REFERENCE --out reports/ablation.json

Rows: MAGNeT; MAGNeT rescored by the AR model for each --weights w < 1 (Eq. 5: w weighs MAGNeT's probability);
two-model hybrid inference (the AR model generates the first --hybrid-prompt-seconds, MAGNeT the rest); Hybrid-MAGNeT
(one jointly trained model, when --hybrid is given); the AR model alone. Columns: generation latency at batch 1
and batch 16 (median of --latency-runs after a warm-up, tokens only, text states included; on this machine, in this
run), FAD, KL and CLAP on the prompt set exactly as evaluation/evaluate.py computes them (same items, seeds,
references, loudness). Where the VGGish / PaSST / CLAP weights are absent, --fad-embedder codec gives FAD on the
codec's latents and --allow-random-embedders random-weight PaSST / CLAP; the table says which embedder each column
used; a token-space FAD (the codec quantizer's latents of generated vs reference tokens, no embedder weights) is
reported too. Writes the JSON report and a Markdown table beside it (OUT with .md).

The checkpoints must share one codec (same K, V and frame rate) and take the same captions; the AR model's T5 is
reused when it is the MAGNeT model's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from magnet_lightning.cli.prelude import prepare

prepare()  # the start-up of every entry point (hub probe once, known warnings quiet): before transformers loads

import torch  # noqa: E402  (after the start-up above)

from magnet_lightning.checkpoint.hub import expand_args
from magnet_lightning.cli import checks
from magnet_lightning.cli.checks import peek_checkpoint
from magnet_lightning.cli.evaluate import check_readable, embedder_kwargs, is_shards, load_items, write_report
from magnet_lightning.cli.options import user_error
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.errors import CheckpointError, UserError, pop_debug_flag, user_errors
from magnet_lightning.generation.families import DECODER_FAMILIES, decoder_family
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.options import OptionError
from magnet_lightning.generation.plan import make_plan
from magnet_lightning.generation.request import GenerationRequest
from magnet_lightning.generation.two_model import two_model_generate
from magnet_lightning.metrics.fad import FrechetAudioDistance
from magnet_lightning.metrics.generation_eval import ReferenceLoader, evaluate_items
from magnet_lightning.metrics.suite import AudioEvalSuite


@dataclass
class Setting:
    """One row: a generate function with a MagnetGenerator's interface (what evaluate_items calls)."""

    name: str
    run: Callable[..., Any]
    base: Any
    """The MagnetGenerator whose codec, sample rate and frame rate the outputs use."""
    details: dict[str, Any] = field(default_factory=dict)
    tokens: list[torch.Tensor] = field(default_factory=list)
    """Every generated clip's tokens [K, T] since the last reset (for the token-space FAD)."""

    @property
    def codec(self):
        return self.base.codec

    @property
    def sample_rate(self) -> int:
        return self.base.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.base.frame_rate

    def generate(self, texts, *, duration=None, seed=None, decode_audio=True, progress=None, **_):
        result = self.run(list(texts), duration=duration, seed=seed, decode_audio=decode_audio, progress=progress)
        if decode_audio:  # an evaluated batch (latency runs and throw-away batches decode nothing)
            self.tokens.extend(result.tokens.cpu())
        return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python evaluation/ablation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--magnet", required=True, help="MAGNeT checkpoint (ours, audiocraft's, a repo id or an export)")
    p.add_argument("--ar", required=True, help="autoregressive checkpoint of the same codec (rescorer, hybrid, alone)")
    p.add_argument("--hybrid", default=None, help="a Hybrid-MAGNeT checkpoint (one jointly trained model)")
    p.add_argument("--prompts", required=True, help="caption CSV/.txt/.jsonl, or token shards")
    p.add_argument("--reference", default=None, help="reference audio folder or token shards")
    p.add_argument("--out", required=True, help="JSON report path (the Markdown table goes beside it, .md)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.7, 0.5], help="rescoring weights w < 1")
    p.add_argument("--hybrid-prompt-seconds", type=float, default=DEFAULT_PROMPT_SECONDS,
                   help="seconds the AR model generates before MAGNeT (two-model hybrid; Hybrid-MAGNeT uses its "
                        "checkpoint's setting)")
    p.add_argument("--metrics", nargs="+", default=["fad", "kl", "clap"], choices=["fad", "kl", "clap"])
    p.add_argument("--fad-embedder", default="vggish", help="vggish (paper) or codec (codec latents)")
    p.add_argument("--kl-embedder", default="passt")
    p.add_argument("--clap-embedder", default="clap")
    p.add_argument("--embedder-kwargs", default="{}", help="JSON: embedder name -> loader keyword arguments")
    for name in ("vggish", "passt", "clap"):
        p.add_argument(f"--{name}-ckpt", default=None)
    p.add_argument("--passt-length", type=int, default=None)
    p.add_argument("--clap-tokenizer", default=None)
    p.add_argument("--allow-random-embedders", action="store_true",
                   help="random-weight embedders when weights are missing (pipeline check only, labelled)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-duration", type=float, default=None, help="cap on generated/reference seconds")
    p.add_argument("--duration", type=float, default=None, help="seconds to generate without references")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="MAGNeT decoding steps per codebook")
    p.add_argument("--latency-runs", type=int, default=3)
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--lufs", type=float, default=-14.0)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--allow-random-text-encoder", action="store_true")
    return p


def check_args(args: argparse.Namespace):
    """Every check that needs no model: numbers, files, and the checkpoints' families and codec layouts."""

    for flag, value in (("--batch-size", args.batch_size), ("--limit", args.limit), ("--duration", args.duration),
                        ("--max-duration", args.max_duration), ("--latency-runs", args.latency_runs),
                        ("--hybrid-prompt-seconds", args.hybrid_prompt_seconds)):
        checks.positive(flag, value)
    if any(not 0 <= w < 1 for w in args.weights):
        raise UserError(f"--weights {args.weights}: each rescoring weight must be in [0, 1) (1 is plain MAGNeT)")
    checks.output_file(args.out)
    if not is_shards(args.prompts) and not Path(args.prompts).is_file():
        raise FileNotFoundError(f"--prompts {args.prompts} not found (a caption CSV/.txt/.jsonl or token shards)")
    embedder_kwargs(args)
    facts = {flag: checks.peek_checkpoint(ckpt) for flag, ckpt in (("--magnet", args.magnet), ("--ar", args.ar),
                                                                   ("--hybrid", args.hybrid)) if ckpt}
    roles = {"--magnet": "rescored", "--ar": "partner", "--hybrid": "own_prompt"}  # what each row needs (families.py)
    for flag, fact in facts.items():
        if not getattr(decoder_family(fact.family), roles[flag]):
            names = [name for name, spec in DECODER_FAMILIES.items() if getattr(spec, roles[flag])]
            raise UserError(f"{flag}: needs a {' or '.join(names)} checkpoint, got {fact.family}")
        if (fact.num_codebooks, fact.codebook_size) != (facts["--magnet"].num_codebooks,
                                                      facts["--magnet"].codebook_size):
            raise UserError(f"{flag}: K={fact.num_codebooks}, V={fact.codebook_size} differ from --magnet's: the "
                            "models must share one codec")
    magnet, steps = facts["--magnet"], {"decoding_steps": args.steps} if args.steps else {}
    duration = args.max_duration or args.duration
    try:  # every MAGNeT row's plan, as the generation will build it
        for weight in (1.0, *args.weights):
            make_plan(magnet, GenerationRequest(duration, options={**steps, "rescore_weight": weight},
                                                rescorer=facts["--ar"] if weight < 1 else None))
        make_plan(magnet, GenerationRequest(duration, options={**steps, "prompt_seconds": args.hybrid_prompt_seconds},
                                            two_model=facts["--ar"]))
    except OptionError as err:
        raise user_error(err) from None
    return magnet


def build_settings(args: argparse.Namespace, magnet, ar, hybrid) -> list[Setting]:
    """The rows of the ablation, in table order."""

    steps = {"decoding_steps": args.steps} if args.steps else {}

    def magnet_run(weight: float = 1.0):
        def run(texts, duration, seed, decode_audio, progress):
            config = magnet.decoding_config(duration, rescore_weight=weight, **steps)
            return magnet.generate(texts, duration=duration, seed=seed, decode_audio=decode_audio, progress=progress,
                                   decoding=config, rescorer=ar if weight < 1 else None)
        return run

    def hybrid_run(texts, duration, seed, decode_audio, progress):
        config = magnet.decoding_config(duration, **steps)
        return two_model_generate(magnet, ar, texts, duration=duration, prompt_seconds=args.hybrid_prompt_seconds,
                               decoding=config, seed=seed, decode_audio=decode_audio, progress=progress)

    def family_run(gen):
        def run(texts, duration, seed, decode_audio, progress):
            config = gen.decoding_config(duration, **(steps if gen.decoder.presets else {}))
            return gen.generate(texts, duration=duration, seed=seed, decode_audio=decode_audio, progress=progress,
                                decoding=config)
        return run

    rows = [Setting("MAGNeT", magnet_run(), magnet, {"rescore_weight": 1.0})]
    rows += [Setting(f"MAGNeT + AR rescoring (w={w:g})", magnet_run(w), magnet, {"rescore_weight": w})
             for w in args.weights]
    rows.append(Setting(f"AR prompt {args.hybrid_prompt_seconds:g} s + MAGNeT (two models)", hybrid_run, magnet,
                        {"prompt_seconds": args.hybrid_prompt_seconds}))
    if hybrid is not None:
        rows.append(Setting("Hybrid-MAGNeT (one model)", family_run(hybrid), hybrid,
                            {"prompt_seconds": hybrid.plan().own_prompt_frames / hybrid.frame_rate}))
    rows.append(Setting("AR alone", family_run(ar), ar, {}))
    return rows


def reference_tokens(items, references, codec) -> list[torch.Tensor]:
    """The items' reference tokens [K, T]: a shard's own codes, or the reference audio encoded by the codec."""
    out = []
    for item in items:
        if item.codes is not None:
            out.append(torch.as_tensor(item.codes).long())
        else:
            out.append(codec.encode(references(item)[None], codec.sample_rate)[0].cpu())
    return out


def token_fad(codec, generated: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Fréchet distance between the frames of the codec quantizer's latents (codec.dequantize) of generated and of
    reference tokens: a distance in token space that needs no embedder weights and does not go through the decoder
    (with the demo's random-weight codec, decoding and re-encoding hide most differences between token streams)."""

    fad = FrechetAudioDistance(num_features=codec.latent_dim)
    for real, streams in ((False, generated), (True, reference)):
        for codes in streams:
            fad.update(codec.dequantize(codes[None])[0].T.double().cpu(), real=real)
    return float(fad.compute())


def latency(setting: Setting, batch: int, duration: float, runs: int, device: torch.device) -> float:
    """Median seconds of one generation of `batch` captions (tokens only), after a warm-up."""
    texts = [f"an example caption number {i}" for i in range(batch)]
    times = []
    for run in range(runs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        setting.generate(texts, duration=duration, seed=run, decode_audio=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if run:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_models(args: argparse.Namespace, device: torch.device, codec):

    magnet = MagnetGenerator.from_pretrained(args.magnet, device=device, codec=codec,
                                             allow_random_text_encoder=args.allow_random_text_encoder)
    shared_t5 = magnet.text_encoder

    def partner(ckpt):

        same = shared_t5 is not None and shared_t5.serves(peek_checkpoint(ckpt).text_encoder)
        return MagnetGenerator.from_pretrained(ckpt, device=device, codec=codec,
                                               text_encoder=shared_t5 if same else None,
                                               allow_random_text_encoder=args.allow_random_text_encoder)

    return magnet, partner(args.ar), partner(args.hybrid) if args.hybrid else None


def ablation(args: argparse.Namespace) -> dict[str, Any]:

    facts = check_args(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    items, skipped = load_items(args, facts.num_codebooks, facts.codebook_size)
    items, skipped["unreadable_reference"] = check_readable(items, args.skip_bad)
    if not items:
        raise UserError("no evaluation items left (see the skip messages above)")
    codec = load_codec(facts.codec, device=device)
    embedders = {"fad": args.fad_embedder, "kl": args.kl_embedder, "clap": args.clap_embedder}
    suite = AudioEvalSuite(args.metrics, embedders, embedder_kwargs(args), args.allow_random_embedders, args.seed,
                           codec=codec).to(device)
    magnet, ar, hybrid = load_models(args, device, codec)
    references = ReferenceLoader(codec)  # decoded / read once, shared by every row
    with torch.no_grad():
        real_tokens = reference_tokens(items, references, codec)
    duration = args.max_duration or args.duration or magnet.segment_duration
    rows = []
    for setting in build_settings(args, magnet, ar, hybrid):
        suite.reset()
        with torch.no_grad():
            evaluate_items(setting, suite, items, batch_size=args.batch_size, seed=args.seed,
                           max_duration=args.max_duration, default_duration=args.duration, lufs=args.lufs,
                           references=references)
            metrics = {**suite.compute(), "token_fad": token_fad(codec, setting.tokens, real_tokens)}
            times = {f"b{b}": round(latency(setting, b, duration, args.latency_runs, device), 4)
                     for b in args.latency_batches}
        rows.append({"name": setting.name, **setting.details, "latency_s": times, "metrics": metrics})
        print(f"{setting.name}: latency {times}, {metrics}", flush=True)
    return {
        "rows": rows, "num_items": len(items), "skipped": skipped,
        "settings": {
            "magnet": args.magnet, "ar": args.ar, "hybrid": args.hybrid, "prompts": args.prompts,
            "reference": args.reference, "embedders": {m: embedders[m] for m in args.metrics},
            "random_embedders": args.allow_random_embedders, "seed": args.seed, "batch_size": args.batch_size,
            "latency_duration_s": duration, "latency_runs": args.latency_runs, "device": str(device),
            "torch_threads": torch.get_num_threads(), "magnet_decoding": asdict(magnet.decoding_config(duration)),
            "ar_decoding": asdict(ar.decoding_config()),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """The report's rows as a Markdown table; each metric column names its embedder (and random weights)."""
    settings = report["settings"]
    batches = list(report["rows"][0]["latency_s"])
    metrics = list(report["rows"][0]["metrics"])
    mark = " (random weights)" if settings["random_embedders"] else ""
    names = {"fad": "FAD", "kl": "KL", "clap": "CLAP"}

    def column(metric: str) -> str:
        if metric == "token_fad":
            return "token FAD [codec quantizer latents]"
        embedder = settings["embedders"][metric]
        return f"{names[metric]} [{embedder}{mark if embedder != 'codec' else ''}]"

    header = ["setting"] + [f"latency {b} (s)" for b in batches] + [column(m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["rows"]:
        cells = [row["name"]] + [f"{row['latency_s'][b]:.3f}" for b in batches] + [
            f"{row['metrics'][m]:.4g}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{report['num_items']} items, seed {settings['seed']}, latency at "
                 f"{settings['latency_duration_s']:g} s on {settings['device']} ({settings['torch_threads']} threads), "
                 f"median of {settings['latency_runs']} runs.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:

    args = build_parser().parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    expand_args(args, "magnet", "ar", "hybrid", "prompts", "reference", "out", "vggish_ckpt", "passt_ckpt", "clap_ckpt",
                "clap_tokenizer")

    with user_errors(CheckpointError):
        report = ablation(args)
        write_report(report, args.out)
        table = Path(args.out).with_suffix(".md")
        table.write_text(markdown(report), encoding="utf-8")
        print(markdown(report))
        print(f"wrote {args.out} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
