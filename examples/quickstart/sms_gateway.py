#!/usr/bin/env python3
"""An SMS gateway stand-in for trying the quickstart: python3 examples/quickstart/sms_gateway.py

It listens on 127.0.0.1:2526 for the quickstart's `ops-sms` channel, prints each message it is
asked to send, answers with a message id, and a second later posts a delivery report for it to
serve, as a real gateway would: serve then shows the SMS as `delivered`. Start serve with
SMS_REPORT_SECRET=quickstart-report-secret so it accepts the reports. Python's standard library
only; stop it with Ctrl-C.

    --listen 127.0.0.1:2526   where the channel's `url` points
    --serve http://127.0.0.1:8080   where serve listens (reports go to /ingest/v1/delivery/ops-sms)
"""

import argparse
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "quickstart-report-secret"


def report(serve, msg_id):
    time.sleep(1)
    body = json.dumps({"msg_id": msg_id, "status": "DELIVRD"}).encode()
    request = urllib.request.Request(
        f"{serve}/ingest/v1/delivery/ops-sms",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            print(f"report {msg_id}: DELIVRD -> serve answered {answer.status}", flush=True)
    except Exception as e:  # serve down, or it refused the report: say so and carry on
        print(f"report {msg_id}: serve did not take it: {e}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:2526")
    parser.add_argument("--serve", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                message = json.loads(raw)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            msg_id = uuid.uuid4().hex
            print(f"SMS {msg_id} to {message.get('to')}: {message.get('text')}", flush=True)
            answer = json.dumps({"msg_id": msg_id}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            threading.Thread(target=report, args=(args.serve, msg_id), daemon=True).start()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((host, int(port)), Gateway)
    print(f"SMS gateway stand-in on http://{args.listen}/send, reporting to {args.serve}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
