"""The SMTP server of watchkeeper's tests: aiosmtpd delivering into a Maildir, over plain SMTP,
STARTTLS or implicit TLS, optionally requiring AUTH with one user and password. Some recipients
get the reply their local part names, so the tests see how a real server's refusals are read:

  rcpt-550@...  RCPT is refused with 550 (permanent)
  data-550@...  RCPT is accepted, DATA refused with 550 (permanent)
  busy-451@...  RCPT is answered 451 (temporary) the first time, accepted after

Everyone else's mail is delivered. Runs until killed.
"""
import argparse
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler(Mailbox):
    def __init__(self, maildir):
        super().__init__(maildir)
        self.busy_refused = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "rcpt-550":
            return "550 5.1.1 no such user here"
        if local == "busy-451" and address not in self.busy_refused:
            self.busy_refused.add(address)
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(address.split("@")[0] == "data-550" for address in envelope.rcpt_tos):
            return "550 5.7.1 message refused by policy"
        return await super().handle_DATA(server, session, envelope)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    options = {}
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        if args.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        else:
            # The whole connection is TLS: aiosmtpd only knows a STARTTLS one as such.
            options.update(ssl_context=context, auth_require_tls=False)
    if args.user is not None:
        expected = (args.user.encode(), args.password.encode())

        def authenticate(server, session, envelope, mechanism, auth_data):
            given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None
            # handled=False: aiosmtpd then answers 535 itself.
            return AuthResult(success=given == expected, handled=False)

        options.update(authenticator=authenticate, auth_required=True)
    controller = Controller(Handler(args.maildir), hostname="127.0.0.1", port=args.port, **options)
    controller.start()
    threading.Event().wait()


main()
