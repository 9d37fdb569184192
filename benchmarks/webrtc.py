"""WebRTC avatar benchmark on loopback: end-to-end latency and A/V offset.

A real aiortc peer sends bursts of noise (between stretches of silence) as its microphone to
an in-process AvatarServer and receives the avatar. Times start when a burst's first sample
was *captured*: the sending track hands over each 20 ms packet once its last sample would
have been captured by a microphone. For every burst:

- latency (the figure the aim is about): the frame shown with the burst's onset (found on
  the shared output timeline through RTCP sender reports) is made from its own 40 ms audio
  period plus the look-ahead; from the capture of the end of that period to the arrival of
  the frame's last RTP packet (a browser decodes on it). Its floor is the look-ahead
  (``config.lookahead_samples``: the least latency this model can have);
- voice delay: from the onset's capture until the onset could be played from the avatar's
  own audio (its packet's arrival plus the onset's place in it), which plays with its frames;
- first reaction: to the arrival of the first video frame that differs (its window first
  hears the burst; it shows a moment a look-ahead *before* the burst), with a breakdown:
  microphone in, model, out;
- A/V offset: the received audio's burst onset and that frame, both converted to the
  sender's clock through RTCP sender reports (as a browser does), minus the lead the window
  geometry gives that frame (look-ahead + the onset's place within a frame, whose average
  over bursts at random phases is half a stride): 0 means the frame and its own audio
  carry the same timestamps.

The model is random-weight (no weights can be downloaded here) with a responsive audio path
(testsupport.loopback_client.audio_responsive_model): ``--config tiny`` (64x48) or
``grid`` (the GRID checkpoint's 128x96 size). Prints the figures and writes JSON under
benchmarks/results/.

    python benchmarks/webrtc.py --seconds 60 --config tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

from realtime_sda.server import AvatarServer, ServerConfig
from testsupport.loopback_client import LoopbackViewer, audio_responsive_model
from testsupport.models import grid_config, tiny_config

RATE = 48000
PTIME = 960  # 20 ms microphone packets
BURST_S = 0.4
CHANGE = 1.0  # mean abs change (8-bit levels) that counts as the picture reacting; silence gives < 0.2


def burst_signal(seconds: float, every: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Silence with a burst of noise every ``every`` s (starting at 3 s); onset sample indices."""
    rng = np.random.default_rng(seed)
    sig = np.zeros(int(RATE * seconds), np.float32)
    onsets = []
    t = 3.0
    while t + BURST_S + 0.5 < seconds:
        a = int(RATE * t)
        sig[a : a + int(RATE * BURST_S)] = 0.5 * rng.standard_normal(int(RATE * BURST_S))
        onsets.append(a)
        t += every
    return sig, onsets


def tap_server(peer) -> dict[str, list]:
    """Observe (not alter) the server side: when loud microphone audio was pushed into the
    session, and when each frame reached this viewer's sink (with its change from the last)."""
    taps: dict[str, list] = {"mic": [], "sink": [], "sent": []}
    on_audio, put, recv = peer.on_audio, peer.feed.put, peer.video.recv
    last: list[np.ndarray] = []

    def audio(pcm: np.ndarray, rate: int) -> None:
        taps["mic"].append((time.monotonic(), float(np.abs(pcm).max()) if len(pcm) else 0.0))
        on_audio(pcm, rate)

    def sink_put(frame) -> None:
        img = frame.image.astype(np.float32)
        change = float(np.abs(img - last[0]).mean()) if last else 0.0
        last[:] = [img]
        taps["sink"].append((time.monotonic(), change, frame.index, float(frame.pts * frame.time_base)))
        put(frame)

    async def video_recv():
        out = await recv()
        taps["sent"].append((peer.video.last_index, int(out.pts), time.monotonic()))
        return out

    peer.on_audio, peer.feed.put, peer.video.recv = audio, sink_put, video_recv
    return taps


def matched(taps: dict[str, list], viewer: LoopbackViewer, sink_time: float) -> tuple[int, float, float] | None:
    """The client's copy of the frame that reached the server's sink at ``sink_time``: found
    by its RTP timestamp (not by its picture), as (received frame number, arrival time, when
    the server's video track handed it to aiortc's encoder)."""
    sink = next((s for s in taps["sink"] if s[0] == sink_time), None)
    sent = taps["sent"]
    if sink is None or not sent:
        return None
    out, handed = next(((pts, t) for index, pts, t in sent if index >= sink[2]), (None, None))
    if out is None:
        return None
    want = out - sent[0][1]  # the client's pts count from the first frame received
    rtp = viewer.video.rtp
    k = next((j for j, p in enumerate(rtp) if p >= want - 2), None)  # aiortc may round a tick down
    return None if k is None or abs(rtp[k] - want) > 2 else (k, viewer.video.times[k], handed)


def sink_jitter_ms(taps: dict[str, list]) -> dict[str, float]:
    """When frames reach the viewer's sink relative to their master time (minus the earliest):
    what the playout margin has to absorb."""
    d = np.array([t - m for t, _, _, m in taps["sink"]])
    if d.size < 100:
        return {}
    d = 1000 * (d[50:] - d[50:].min())
    return {"p50": float(np.percentile(d, 50)), "p90": float(np.percentile(d, 90)),
            "p99": float(np.percentile(d, 99)), "max": float(d.max())}


def breakdown(taps: dict[str, list], sent: float, every: float) -> dict[str, float]:
    """Where one burst's latency went: microphone transport, model, output."""
    mic = next((t for t, level in taps["mic"] if t > sent and level > 0.1), None)
    frame = next((t for t, change, *_ in taps["sink"] if t > sent and change > CHANGE), None)
    if mic is None or frame is None or frame > sent + every * 0.8:
        return {}
    return {"mic_in_ms": 1000 * (mic - sent), "model_ms": 1000 * (frame - mic), "sink_time": frame}


def analyse(viewer: LoopbackViewer, onsets: list[int], geometry_lead: float, every: float, taps: dict,
            stride: float) -> list[dict]:
    v, a = viewer.video, viewer.audio
    imgs = np.stack(v.data).astype(np.float32)
    diff = np.r_[0.0, np.abs(imgs[1:] - imgs[:-1]).mean(axis=(1, 2, 3))]
    vt = np.asarray(v.times)
    audio_pts = np.asarray(a.rtp)
    out = []
    for onset in onsets:
        k = onset // PTIME
        if k >= len(viewer.mic.sent_at):
            break
        # a microphone hands a packet over once its last sample is captured
        captured = viewer.mic.sent_at[k] - PTIME / RATE + (onset - k * PTIME) / RATE
        window = (vt > captured) & (vt < captured + every * 0.8)
        hits = np.flatnonzero(window & (diff > CHANGE))
        if not hits.size:
            continue
        fi = int(hits[0])
        # the onset in the avatar's audio: its sender time (RTCP) and when it could be played
        a_onset = a_play = None
        for j in np.flatnonzero(np.asarray(a.times) > captured):
            loud = np.flatnonzero(np.abs(a.data[j]) > 0.1)
            if loud.size:
                a_onset = a.sender_time(int(audio_pts[j]) + int(loud[0]), RATE, near=a.times[j])
                a_play = a.times[j] + loud[0] / RATE  # its packet arrived; the onset sits loud[0] in
                break
        if a_onset is None:
            continue
        v_send = v.sender_time(v.rtp[fi], 90000, near=vt[fi])
        # the frame shown with the onset (same output timeline) and when it arrived (last packet)
        near = np.flatnonzero((vt > captured) & (vt < captured + every * 0.8))
        shown = [(i, t) for i in near if (t := v.sender_time(v.rtp[i], 90000, near=vt[i])) <= a_onset + 5e-4]
        frame_latency = None
        if shown:
            i, t_send = shown[-1]
            arrived = v.last_packet.get(v.rtp_timestamp(v.rtp[i]), vt[i])
            period_end_captured = captured + (t_send + stride - a_onset)  # output = delayed input
            frame_latency = 1000 * (arrived - period_end_captured)
        parts = breakdown(taps, captured, every)
        if parts:
            parts["out_ms"] = 1000 * (vt[fi] - captured) - parts["mic_in_ms"] - parts["model_ms"]
            # the same frame found by its timestamp: latency without the codec's say in when
            # the picture first differs enough on the client
            sink_time = parts.pop("sink_time")
            match = matched(taps, viewer, sink_time)
            if match is not None:
                k, t_recv, handed = match
                parts["playout_wait_ms"] = 1000 * (handed - sink_time)
                parts["matched_latency_ms"] = 1000 * (t_recv - captured)
                parts["matched_out_ms"] = parts["matched_latency_ms"] - parts["mic_in_ms"] - parts["model_ms"]
                parts["matched_av_offset_ms"] = 1000 * ((a_onset - v.sender_time(v.rtp[k], 90000, near=vt[k])) - geometry_lead)
                last = v.last_packet.get(v.rtp_timestamp(v.rtp[k]))
                if last is not None:  # what aiortc's receiver adds: waiting for the next frame
                    parts["client_wait_ms"] = 1000 * (t_recv - last)
                    parts["encode_send_ms"] = 1000 * (last - handed)  # VP8, packets, loopback
        out.append({
            "t": captured - viewer.mic.sent_at[0],
            "latency_ms": 1000 * (vt[fi] - captured),
            "voice_delay_ms": 1000 * (a_play - captured),
            **({"frame_latency_ms": frame_latency} if frame_latency is not None else {}),
            "av_offset_ms": 1000 * ((a_onset - v_send) - geometry_lead),
            **parts,
        })
    return out


async def run(args: argparse.Namespace) -> dict:
    config = tiny_config() if args.config == "tiny" else grid_config()
    device = torch.device(args.device)
    model = audio_responsive_model(config, seed=1).to(device)
    if args.bf16:
        model.set_inference_dtype(torch.bfloat16)
    h, w = config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    every = 1.93  # not a multiple of the frame period: bursts fall at all phases of a frame
    signal, onsets = burst_signal(args.seconds, every)
    async with AvatarServer(model, ServerConfig(port=0), still) as srv:
        # the viewer receives the avatar's audio without aiortc's 80 ms prefetch, as the server
        # receives the microphone (a browser's adaptive jitter buffer adds its own, on loopback little)
        async with LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", signal=signal, audio_prefetch=0) as viewer:
            client = next(iter(srv.clients))
            peer, session = client.peer, client.session
            taps = tap_server(peer)
            worker_threads = srv.worker.num_threads
            await asyncio.sleep(args.seconds + 1.0)
            server = {
                "frames_sent": peer.video.sent, "dropped_late": peer.video.dropped_late,
                "dropped_queue_full": peer.feed.dropped_full, "audio_frames": peer.audio.sent,
                "audio_silent_frames": peer.audio.silent, "clock_slips": peer.feed.clock.slips,
                "clock_reclaims": peer.feed.clock.reclaims, "playout_delay_ms": 1000 * peer.feed.clock.delay_s,
                "session": session.stats.snapshot()._asdict() if hasattr(session.stats.snapshot(), "_asdict")
                else vars(session.stats.snapshot()),
            }
    lookahead = config.lookahead_samples / config.audio_rate
    stride = config.stride / config.audio_rate
    bursts = analyse(viewer, onsets, lookahead + stride / 2, every, taps, stride)
    t = np.asarray(viewer.video.times)
    steady = t[t > t[0] + 2.0]
    lat = np.array([b["latency_ms"] for b in bursts])
    av = np.array([b["av_offset_ms"] for b in bursts])
    drift = float(np.polyfit([b["t"] for b in bursts], av, 1)[0] * 60) if len(bursts) > 2 else float("nan")
    return {
        "benchmark": "webrtc",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "device": str(device), "torch_threads": worker_threads,
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "model": {"config": args.config, "img_size": [h, w], "audio_rate": config.audio_rate,
                  "video_rate": float(config.video_rate), "lookahead_ms": 1000 * lookahead, "weights": "random (responsive)",
                  "dtype": "bfloat16 generator" if args.bf16 else "float32"},
        "seconds": args.seconds,
        "received_fps": float((len(steady) - 1) / (steady[-1] - steady[0])) if len(steady) > 1 else float("nan"),
        "bursts": len(bursts),
        "latency_ms": {"median": float(np.median(lat)), "p90": float(np.percentile(lat, 90)),
                       "min": float(lat.min()), "max": float(lat.max()),
                       **{f"{k}_median": float(np.median([b[k] for b in bursts if k in b])) for k in ("mic_in_ms", "model_ms", "out_ms")
                          if any(k in b for b in bursts)}},
        "frame_latency_ms": {"median": float(np.median(fl := [b["frame_latency_ms"] for b in bursts if "frame_latency_ms" in b])),
                             "p90": float(np.percentile(fl, 90)), "min": float(np.min(fl)), "max": float(np.max(fl)),
                             "beyond_lookahead_median": float(np.median(fl)) - 1000 * lookahead, "bursts": len(fl)},
        "voice_delay_ms": {"median": float(np.median(s2a := [b["voice_delay_ms"] for b in bursts])),
                                "p90": float(np.percentile(s2a, 90)),
                                "beyond_lookahead_median": float(np.median(s2a)) - 1000 * lookahead},
        "matched": {f"{k}_median": float(np.median(vals)) for k in ("matched_latency_ms", "matched_out_ms", "playout_wait_ms",
                                                                  "encode_send_ms", "client_wait_ms")
                    if (vals := [b[k] for b in bursts if k in b])}
        | ({"matched_av_offset_ms_median": float(np.median(m)), "matched_av_offset_abs_p90": float(np.percentile(np.abs(m), 90)),
            "bursts": len(m)} if (m := [b["matched_av_offset_ms"] for b in bursts if "matched_av_offset_ms" in b]) else {}),
        "sink_jitter_ms": sink_jitter_ms(taps),
        "av_offset_ms": {"median": float(np.median(av)), "abs_p90": float(np.percentile(np.abs(av), 90)),
                         "mean": float(av.mean()), "std": float(av.std()), "min": float(av.min()), "max": float(av.max()),
                         "per_burst_quantization_ms": 1000 * stride / 2, "drift_ms_per_min": drift},
        "server": server,
        "per_burst": bursts,
        "notes": f"loopback, one process runs both peers; model on {device}; aim on a GPU: "
                 "latency <= look-ahead + 60 ms, |A/V| < 20 ms, no drift over 10 minutes (this run is shorter)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--config", choices=("tiny", "grid"), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="the generator in bfloat16 (as serve --bf16)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/webrtc[_grid][_cuda].json)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    name = ("webrtc" + ("" if args.config == "tiny" else "_grid") + ("_bf16" if args.bf16 else "")
            + ("" if args.device == "cpu" else "_" + torch.device(args.device).type))
    out = Path(args.out or Path(__file__).parent / "results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    lat, av = result["latency_ms"], result["av_offset_ms"]
    print(f"model {args.config} {result['model']['img_size']} look-ahead {result['model']['lookahead_ms']:.0f} ms, "
          f"{result['seconds']:.0f} s, {result['bursts']} bursts, received {result['received_fps']:.2f} fps")
    print(f"first reaction (onset captured -> first frame that differs): median {lat['median']:.0f} ms, "
          f"p90 {lat['p90']:.0f} ms (min {lat['min']:.0f}, max {lat['max']:.0f})")
    parts = ", ".join(f"{k[:-10]} {lat[k]:.0f} ms" for k in ("mic_in_ms_median", "model_ms_median", "out_ms_median") if k in lat)
    print(f"  median parts: {parts} (mic in: captured -> pushed into the session; model: -> frame made "
          f"(look-ahead, window, inference); out: -> playout clock, VP8, network, jitter buffer)")
    print(f"A/V offset: median {av['median']:+.1f} ms, |offset| p90 {av['abs_p90']:.0f} ms, mean {av['mean']:+.1f} ms, "
          f"std {av['std']:.1f} ms (each burst +-{av['per_burst_quantization_ms']:.0f} ms "
          f"from the frame grid), drift {av['drift_ms_per_min']:+.2f} ms/min")
    fl, s2a = result["frame_latency_ms"], result["voice_delay_ms"]
    print(f"LATENCY (the aim's): a frame's arrival (last packet) minus the capture of the end of its own audio "
          f"period: median {fl['median']:.0f} ms, p90 {fl['p90']:.0f} ms = look-ahead "
          f"{result['model']['lookahead_ms']:.0f} ms + {fl['beyond_lookahead_median']:.0f} ms (aim: + 60 ms on a GPU)")
    print(f"voice delay (burst onset captured -> the onset playable in the avatar's audio, which plays with its "
          f"frames): median {s2a['median']:.0f} ms, p90 {s2a['p90']:.0f} ms")
    m = result["matched"]
    if m:
        print(f"same frames matched by timestamp ({m.get('bursts', 0)} bursts): latency median "
              f"{m.get('matched_latency_ms_median', float('nan')):.0f} ms (out {m.get('matched_out_ms_median', float('nan')):.0f} ms), "
              f"A/V median {m.get('matched_av_offset_ms_median', float('nan')):+.1f} ms, "
              f"|A/V| p90 {m.get('matched_av_offset_abs_p90', float('nan')):.0f} ms; "
              f"of out, {m.get('playout_wait_ms_median', float('nan')):.0f} ms playout clock, "
              f"{m.get('encode_send_ms_median', float('nan')):.0f} ms VP8 + send + loopback, "
              f"{m.get('client_wait_ms_median', float('nan')):.0f} ms between the frame's last packet arriving "
              f"and aiortc's receiver decoding it (it waits for the next frame's first packet)")
    print(f"frames reach the sink after their master time: {result['sink_jitter_ms']} (ms above the earliest)")
    print(f"server: {result['server']['frames_sent']} frames sent, {result['server']['dropped_late']} late-dropped, "
          f"{result['server']['audio_silent_frames']} silent audio frames, playout delay {result['server']['playout_delay_ms']:.0f} ms")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
