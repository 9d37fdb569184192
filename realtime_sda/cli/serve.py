"""``realtime-sda serve``: the WebRTC avatar server and its page (see realtime_sda.server)."""

from __future__ import annotations

import argparse

from ..server.playout import DEFAULT_MARGIN_S, MAX_MARGIN_S, MIN_MARGIN_S

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the live avatar page over WebRTC (microphone or broadcast)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--model", default="default", help="model name or checkpoint path (default 'default')")
    p.add_argument("--avatar", default=None, help="face photo for the default/broadcast avatar (default: the bundled avatar)")
    p.add_argument("--aligned", action="store_true", help="--avatar is already an aligned crop: only resize it (implies --crop)")
    p.add_argument("--crop", action="store_true",
                   help="show the model's aligned face crop instead of the whole photo (default avatar and uploads)")
    p.add_argument("--size", type=int, default=512, metavar="PX",
                   help="long side of the whole-photo video in pixels at most (default 512, real time on a 2-core "
                        "CPU; smaller photos keep their size)")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent page connections (default 8)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server URL (repeatable); none by default, so no traffic leaves this network")
    p.add_argument("--token", default=None, help="require this access token (?token=... in the page URL)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="extra page origin allowed to open the websocket, e.g. https://example.org:443")
    p.add_argument("--broadcast", action="store_true", help="run one broadcast avatar fed by /push that viewers watch")
    p.add_argument("--broadcast-audio", default=None, metavar="FILE", help="feed the broadcast avatar from this audio file (looped)")
    p.add_argument("--lookahead-ms", type=float, default=None, help="less look-ahead than the model's own (lower latency, less quality)")
    p.add_argument("--audio-prefetch", type=int, default=0, metavar="N",
                   help="microphone packets (20 ms each) the server's WebRTC receiver holds before decoding "
                        "one (default 0: each is decoded as soon as it arrives in sequence, for loopback and "
                        "a LAN; 1 is aiortc's minimum, 4 its default). More prefetch absorbs network jitter "
                        "and packet reordering, at 20 ms of latency per packet")
    p.add_argument("--playout-margin-ms", type=float, default=1000 * DEFAULT_MARGIN_S, metavar="MS",
                   help=f"how early frames must reach a viewer's sender before their slot (default "
                        f"{1000 * DEFAULT_MARGIN_S:g}, {1000 * MIN_MARGIN_S:g} to {1000 * MAX_MARGIN_S:g}; the "
                        "playout clock moves later on its own when frames come later than that)")
    p.add_argument("--tls-cert", default=None, metavar="PEM",
                   help="serve https/wss with this certificate (browsers give the microphone only to secure "
                        "pages or localhost: needed for other machines of a LAN); see README for a self-signed one")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the certificate's private key (if not in --tls-cert)")
    p.add_argument("-v", "--verbose", action="store_true", help="log aiortc/aioice's connection details too")
    p.add_argument("--bf16", action="store_true", help="run the generator in bfloat16 (on CPUs with AVX-512 BF16 "
                   "or AMX about twice as fast, so less latency and more sessions)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    # cluster mode (issue 15): realtime_sda.cluster.launch does the rest
    p.add_argument("--cluster", default=None, metavar="auto|ADDRESS",
                   help="run the avatar workers on a Ray cluster (the cluster extra): auto (the one started "
                        "on this machine with 'ray start') or its address; this process is a front door")
    p.add_argument("--worker-cpus", type=int, default=1, metavar="N",
                   help="with --cluster: CPU cores per avatar worker on nodes without a GPU (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "cluster", None):
        from ..cluster.launch import run_cli

        return run_cli(args)
    import asyncio
    import logging
    from pathlib import Path

    from ..errors import RealtimeSDAError
    from ..server import AvatarServer, Limits, ServerConfig, load_still
    from ..server.stills import default_photo

    if args.audio_prefetch < 0:
        raise RealtimeSDAError(f"--audio-prefetch must be 0 or more, got {args.audio_prefetch}")
    from ..server.playout import check_margin

    try:
        check_margin(args.playout_margin_ms / 1000.0)
    except ValueError:
        raise RealtimeSDAError(f"--playout-margin-ms must be between {1000 * MIN_MARGIN_S:g} and "
                               f"{1000 * MAX_MARGIN_S:g}, got {args.playout_margin_ms:g}") from None
    if args.max_sessions < 1:
        raise RealtimeSDAError(f"--max-sessions must be at least 1, got {args.max_sessions}")
    from ..checkpoints.loading import load_model

    model = load_model(args.model, device=args.device)
    if args.bf16:
        import torch

        model.set_inference_dtype(torch.bfloat16)
    crop = args.crop or args.aligned
    if not crop and args.size < 16:
        raise RealtimeSDAError(f"--size must be at least 16 pixels, got {args.size}")
    still = load_still(args.avatar, model.config, aligned=args.aligned) if crop else None
    photo = None if crop else default_photo(args.avatar)
    config = ServerConfig(
        host=args.host, port=args.port, ice_servers=list(args.ice_server), token=args.token,
        limits=Limits(max_sessions=args.max_sessions, allowed_origins=frozenset(args.allow_origin)),
        broadcast=args.broadcast, broadcast_audio=Path(args.broadcast_audio) if args.broadcast_audio else None,
        lookahead_ms=args.lookahead_ms, audio_prefetch=args.audio_prefetch,
        playout_margin_ms=args.playout_margin_ms, photo=not crop, photo_size=args.size,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None, tls_key=Path(args.tls_key) if args.tls_key else None,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.verbose:
        from ..server.logs import quiet_media_loggers

        quiet_media_loggers()

    async def main() -> None:
        async with AvatarServer(model, config, still, default_photo=photo) as server:
            query = f"?token={args.token}" if args.token else ""
            print(f"realtime-sda: open {config.scheme}://{args.host}:{server.port}/{query} (Ctrl-C stops)", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    return 0
