"""The dashboard: a Textual client of a running engine's control socket (``appliance tui``).

Architecture, in the frogmouth/toolong/harlequin mould:

* ``app.py`` is thin: it builds the screens, owns the one ``EngineLink`` and turns what the link
  reports into messages, and those into a ``changed`` signal that widgets subscribe to.
* ``connection.py`` (no Textual) owns every socket: it polls status/stats/in-flight, follows the event
  stream, and reconnects by itself when the engine goes away and comes back.
* ``feed.py``, ``format.py``, ``forms_model.py``, ``settings.py`` are plain functions and records,
  tested without an event loop.
* ``screens/`` and ``widgets/`` draw; styles live in ``app.tcss``.  Every call to the engine runs in a
  worker, never on the message pump.
* Bursts of events are appended to a bounded ``EventFeed``; the table redraws from it at most every
  100 ms (``FeedChanged`` messages coalesce), so thousands of events per second stay smooth.

The wall: from the engine package this package imports ``appliance.protocol`` and
``appliance.control.client`` and nothing else (a test parses every import); the engine never
imports Textual (a subprocess test checks ``sys.modules``).  Secrets only ever travel inward: the
engine never sends a password back, and the credential form clears its masked field once saved.
The access editor goes further, as the CLI does: a user's password is hashed here and a robot token
made here (``appliance.protocol.access_input``), so only a hash or a digest ever crosses the socket,
and a token's secret lives only while its one-time modal is open.
"""
