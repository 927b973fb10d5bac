"""``python -m switchboard.whatsapp_simulator``: a full WhatsApp flow against a
running Switchboard (see docs/plugins/whatsapp.md)."""

from __future__ import annotations

import argparse
import sys

import httpx
import trio

from .server import Simulator, SimulatorConfig


async def main(args: argparse.Namespace) -> None:
    base = args.switchboard.rstrip("/")
    hooks = f"{base}/api/v1/whatsapp/webhooks/{args.tenant}"
    sim = Simulator(SimulatorConfig(cloud_webhook=f"{hooks}/cloud",
                                    bridge_webhook=f"{hooks}/phone",
                                    qr_interval=args.qr_interval))
    headers = {"Authorization": f"Bearer {args.api_key}"}
    async with trio.open_nursery() as nursery:
        await sim.start(nursery, args.port)
        c = sim.config
        print(f"simulator listening on {sim.base_url}")
        async with httpx.AsyncClient(headers=headers) as http:
            for body in (
                {"tenant": args.tenant, "id": "cloud", "provider": "cloud",
                 "cloud": {"phoneNumberId": c.phone_number_id, "accessToken": c.access_token,
                           "appSecret": c.app_secret, "verifyToken": "sim-verify"}},
                {"tenant": args.tenant, "id": "phone", "provider": "bridge",
                 "bridge": {"url": sim.base_url, "apiKey": c.bridge_api_key,
                            "instance": c.instance}},
            ):
                answer = await http.post(f"{base}/api/v1/whatsapp/sessions", json=body)
                if answer.status_code not in (201, 409):
                    sys.exit(f"creating session {body['id']!r}: {answer.status_code} "
                             f"{answer.text}")
            await http.post(f"{base}/api/v1/whatsapp/sessions/cloud/start",
                            json={"tenant": args.tenant})
            answer = await http.post(f"{base}/api/v1/whatsapp/sessions/phone/start",
                                     json={"tenant": args.tenant})
            state = answer.json().get("status") or answer.json().get("state")
            print(f"session 'phone' (bridge): {state}, a QR code every "
                  f"{args.qr_interval:g} s; link it: curl -X POST {sim.base_url}/sim/scan")
        answer = await sim.customer_writes("5511987654321", "Hello! Is my order on its way?")
        print(f"a customer wrote on session 'cloud' (webhook answered {answer.status_code}); "
              f"more: curl -X POST {sim.base_url}/sim/inbound "
              "-d '{\"from\": \"5511900000000\", \"text\": \"hi\"}'")
        print("agents' replies in whatsapp:cloud:5511987654321 arrive here; "
              f"see {sim.base_url}/sim/requests. Ctrl-C to stop.")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard.whatsapp_simulator",
                                     description=__doc__)
    parser.add_argument("--switchboard", default="http://127.0.0.1:8080",
                        help="the Switchboard to talk to")
    parser.add_argument("--api-key", default="demo-key-change-me", help="an API key of it")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--port", type=int, default=9009,
                        help="the simulator's port (the config's graph_url points there)")
    parser.add_argument("--qr-interval", type=float, default=20.0)
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli()
