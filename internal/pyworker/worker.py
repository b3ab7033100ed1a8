"""dbtorch's Python worker: keeps dbt imported and the project parsed, and
answers requests: dbt invocations for the warm executor, `dbt ls`
selections for the selector's session. Embedded by internal/pyworker.

Protocol (JSON lines). Requests come on stdin; replies go to the file
descriptor named by $DBTORCH_WORKER_FD (never stdout, where dbt logs):

  -> {"id": 0, "type": "start", "deps_args": [...] | null, "parse_args": [...], "key": "<vars>"}
  <- {"id": 0, "type": "ready", "pid": 123, "elapsed": 3.2, "patches": ["reuse_graph", ...], "enabled": [...], "warmed": false}
     or {"id": 0, "type": "fatal", "error": "..."} and exit 3
  -> {"id": N, "type": "invoke", "args": [...], "parse_args": [...], "key": "<vars>", "results_path": "...", "build": "<id>", "sole": true|false}
  <- {"id": N, "type": "done", "success": true|false, "error": null|"...", "elapsed": 0.4}
  -> {"id": N, "type": "ls", "args": [...], "parse_args": [...], "key": "<vars>"}
  <- {"id": N, "type": "done", "success": true|false, "error": null|"...", "ids": [...], "elapsed": 0.1}
  -> {"id": N, "type": "show", "args": [...], "parse_args": [...], "key": "<vars>"}
  <- {"id": N, "type": "done", "success": true|false, "error": null|"...", "rows": [[...], ...], "elapsed": 0.2}
     (a show whose args hold --inline-direct runs without the manifest; its rows are read from dbt's ShowNode event)
  -> {"id": N, "type": "hooks", "phase": "on-run-start"|"on-run-end", "args": [...], "parse_args": [...],
      "key": "<vars>", "results_path": "...", "build": "<id>", "nodes": [...], "results": [...]}
  <- {"id": N, "type": "done", "success": true|false, "error": null|"...", "unsupported": false, "elapsed": 0.3}
  -> {"id": N, "type": "cancel"}   (no reply of its own: request N's reply comes early)

Zygote. Started with $DBTORCH_ZYGOTE_FD (a Unix socket), the worker is a
zygote: it answers "start" as any worker does and then only forks
workers that have its parsed manifests (zygote_loop). For each fork the
parent first sends three file descriptors over the socket (SCM_RIGHTS:
the new worker's stdin, its reply descriptor, its stdout and stderr),
then the request:

  -> {"id": N, "type": "fork"}
  <- {"id": N, "type": "forked", "pid": 124}
     (the new worker is ready: it takes requests on its stdin as any
     worker does after "ready", without a "start" of its own)
  <- {"id": 0, "type": "exited", "pid": 124, "code": 0 | 1 | -9}
     (whenever a forked worker ends; a negative code is the signal)

The zygote runs no dbt invocation against the database itself: before
it answers "ready" it runs one `dbt ls`, which builds what the workers
then share, and one dry `dbt run` of a model whose connections send
nothing anywhere (warm_forks, dry_run; "warmed" in its ready reply says
whether that ls succeeded).
End of its stdin ends it once its workers have ended; a forked worker
dies with it (PR_SET_PDEATHSIG).

Requests are read on a thread of their own and may overlap: replies come
in any order, each with its request's id. An "invoke" may carry
"session": {"key": "...", "args": [...], "dir": "..."} and "nodes": [one
unique_id]: the node then runs in the worker's build session (Session,
build_session) when the worker has one: a `dbt build` task started with
"args" (a `dbt build` command line selecting that node, without target
and log paths; the session's go under "dir") that runs up to its
--threads nodes at once, node by node as requests come, each reply
coming when its node is done, with its run_results.json (one result) at
"results_path". The ready reply's "session" says whether the worker can.
"key" names the session: an invoke with another key (another build,
other vars or flags), any other request, an invoke without "session",
of several nodes, of a microbatch model or, unless "no_hooks", in a
project with hooks, first waits for the session's nodes and ends it, and
then runs as an invocation of its own; nothing else runs dbt while a
session lives. "cancel" cancels request N: one not started yet is
answered at once ("cancelled before it started"); a session's running
node has its thread's database connection cancelled and is answered with
what dbt reports for it; an invocation of its own gets SIGINT, as the
parent's cancellation did (the worker exits 130).

"args" is a full dbt command line without the executable; "parse_args" is
the `dbt parse` command line whose manifest "args" must run against;
"deps_args", when given, is a `dbt deps` run before the first parse. The
worker parses once per distinct "key" (the invocation's vars) and keeps a
few manifests. When "results_path" is set, the worker writes dbt's run
results there itself (the parent then passes --no-write-json, which saves
dbt writing manifest.json in every invocation). "build" names the
orchestrated build the request belongs to: within one build the worker
remembers which schemas exist, as one `dbt build` does (see
remember_schemas). "sole" says the worker is its executor's only one,
so nothing else of the build runs dbt while it waits between requests:
within one build it then keeps dbt's relation cache from one invocation
to the next (see keep_relation_cache). An "ls" reply lists the unique_ids dbt ls printed,
sorted. End of stdin ends the worker; so does SIGINT (exit 130).

Project hooks. An orchestrated build runs the project's on-run-start and
on-run-end hooks once, not in every invocation: an "invoke" with
"no_hooks" runs neither (suppress_project_hooks), and a "hooks" request
runs one phase of them through dbt's own RunTask machinery
(run_project_hooks): "args" is a `dbt build` command line whose task runs
only that phase, "nodes" the build's unique_ids (on-run-start: dbt first
creates their schemas, as dbt build does), "results" the build's results
in run_results.json's shape (on-run-end: dbt's `results`), and the
hooks' own results are written to "results_path". A dbt whose internals
differ from those the hooks code was written for answers "unsupported".
The ready reply's "hooks" says whether invocations can run without hooks.
Run as `python worker.py dbt ARGS...`, the script is dbt's command line
with the project hooks off (the Core executor's invocations).

Patches. Beyond keeping dbt imported, the worker replaces a few dbt
internals that redo, in every invocation, work whose inputs did not change
(PATCHES below; each function documents what it saves and why it is
sound). Each is enabled only on the dbt-core minor versions it was proven
on (its range in PATCHES; "enabled" in the ready reply), and replaces a dbt
internal only when that internal has the signature the patch was written
for (takes(); "patches" lists those applied), so another dbt runs
unpatched, slower but the same, rather than broken.
$DBTORCH_WORKER_PATCHES=off runs without any. The warm executor's conformance test (executor/warm_test.go,
TestWarmPatchedUnpatchedCoreAgree) runs the bundled shop project patched,
unpatched and through dbt's own CLI and requires identical per-node
results.
"""

import atexit
import contextlib
import gc
import importlib
import inspect
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import OrderedDict

MAX_MANIFESTS = 4
MAX_BUILDS = 8

# Functions of a parsed manifest that patches register (fork_warmer): the
# zygote calls each before it forks (warm_forks), so that what the patch
# keeps per manifest is found once there and shared with every fork,
# instead of found again in each fork's first invocation.
FORK_WARMERS = []


def fork_warmer(fn):
    """Registers fn(manifest) with the zygote's warm_forks."""
    FORK_WARMERS.append(fn)
    return fn


def takes(fn, *names, exact=False):
    """Whether fn's parameters begin with names (are exactly names, with
    exact): each patch below replaces a dbt internal only when it has the
    signature the patch was written for, so another dbt version runs
    unpatched rather than broken."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    if exact:
        return params == list(names)
    return params[: len(names)] == list(names)


def patch_point(target, *names, exact=False):
    """(owner, fn) for target "module:Owner.name" ("module:name": the
    owner is the module): the dbt internal a patch replaces and what holds
    it, when the module imports, the attribute is there and takes(fn,
    *names, exact=exact) (a classmethod's fn is its function, cls first);
    else (None, None), and the patch is not applied."""
    module, _, path = target.partition(":")
    try:
        owner = importlib.import_module(module)
    except ImportError:
        return None, None
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part, None)
    fn = getattr(owner, name, None)
    fn = getattr(fn, "__func__", fn)
    if fn is None or not takes(fn, *names, exact=exact):
        return None, None
    return owner, fn


def cache_plugin_discovery():
    """dbt looks for plugin modules by scanning every module on sys.path in
    every invocation (~0.15 s); the installed modules do not change while
    the worker lives, so scan once."""
    PluginManager, scan = patch_point("dbt.plugins.manager:PluginManager.get_prefixed_modules", "cls")
    if scan is None:
        return False
    found = {}

    def get_prefixed_modules(cls):
        if "modules" not in found:
            found["modules"] = scan(cls)
        return found["modules"]

    PluginManager.get_prefixed_modules = classmethod(get_prefixed_modules)
    return True


def skip_graph_diagnostics():
    """Every invocation writes target/graph.gpickle and computes the graph
    summaries of target/graph_summary.json, diagnostics no one reads from a
    throw-away target directory (~20 ms an invocation on 150 nodes)."""
    Compiler, write = patch_point("dbt.compilation:Compiler.write_graph_file", "self", "linker", "manifest", exact=True)
    Linker, summary = patch_point("dbt.compilation:Linker.get_graph_summary", "self", "manifest", exact=True)
    if write is None or summary is None:
        return False
    Compiler.write_graph_file = lambda self, linker, manifest: None
    Linker.get_graph_summary = lambda self, manifest: {}
    return True


class Builds:
    """The schemas known to exist, per build, for the last MAX_BUILDS
    builds; current is the set of the request being run (None outside a
    build)."""

    def __init__(self):
        self.schemas = OrderedDict()
        self.current = None

    def enter(self, build):
        if not build:
            self.current = None
            return
        known = self.schemas.pop(build, None)
        if known is None:
            known = set()
            while len(self.schemas) >= MAX_BUILDS:
                self.schemas.popitem(last=False)
        self.schemas[build] = known
        self.current = known


def remember_schemas(builds):
    """Every invocation lists the schemas of its database and creates the
    missing ones (~20 ms on DuckDB, new connections on PostgreSQL). One
    `dbt build` does that once for all its nodes; a worker does it once per
    build for each schema: when every schema an invocation needs was listed
    or created earlier in the same build, the check is skipped. A schema
    missing there was not created by this worker, so it is checked as
    before."""
    GraphRunnableTask, create = patch_point(
        "dbt.task.runnable:GraphRunnableTask.create_schemas", "self", "adapter", "required_schemas"
    )
    if create is None:
        return False

    def create_schemas(self, adapter, required_schemas):
        known = builds.current
        if known is None:
            return create(self, adapter, required_schemas)
        keys = {
            ((r.database or "").lower(), r.schema.lower())
            for r in required_schemas
            if r.schema is not None
        }
        if keys <= known:
            return None
        result = create(self, adapter, required_schemas)
        known.update(keys)
        return result

    GraphRunnableTask.create_schemas = create_schemas
    return True

def reuse_graph():
    """Every invocation links the whole project's graph and searches it for
    cycles before selecting its one node: time that grows with the project
    (~10 ms an invocation on 150 nodes). The graph depends only on the
    manifest, which the worker keeps, so link it once per manifest (and per
    kind: dbt build adds test edges); each invocation gets its own Graph
    over it. dbt copies that graph before changing anything.

    dbt then builds the invocation's queue from a copy of the whole graph
    that it prunes layer by layer to the selected nodes; for the one node of
    a per-node invocation the result is that node alone."""
    try:
        from dbt.compilation import _generate_stats, print_compile_stats
    except ImportError:
        return False
    Compiler, compile_ = patch_point("dbt.compilation:Compiler.compile", "self", "manifest", "write", "add_test_edges")
    Graph, subset = patch_point("dbt.graph.graph:Graph.get_subset_graph", "self", "selected")
    if compile_ is None or subset is None or not hasattr(Compiler, "initialize"):
        return False
    # (id(manifest), add_test_edges) -> (weak reference to the manifest,
    # graph, stats). The weak reference tells a manifest that was dropped
    # (and another that got its id) from the one that was linked, without
    # keeping dropped manifests alive.
    graphs = {}

    def compile(self, manifest, write=True, add_test_edges=False):
        key = (id(manifest), bool(add_test_edges))
        hit = graphs.get(key)
        if hit is None or hit[0]() is not manifest:
            graph = compile_(self, manifest, write=write, add_test_edges=add_test_edges)
            graphs.pop(key, None)
            if len(graphs) >= 2 * MAX_MANIFESTS:
                graphs.pop(next(iter(graphs)))
            graphs[key] = hit = (weakref.ref(manifest), graph.graph, _generate_stats(manifest))
            return Graph(hit[1])
        self.initialize()
        if self.config.args.which != "list":
            print_compile_stats(hit[2])
        return Graph(hit[1])

    Compiler.compile = compile

    def get_subset_graph(self, selected):
        selected = set(selected)
        if len(selected) == 1:
            (node,) = selected
            if self.graph.has_node(node):
                g = self.graph.__class__()
                g.add_node(node, **self.graph.nodes[node])
                return Graph(g)
        return subset(self, selected)

    Graph.get_subset_graph = get_subset_graph
    return True

def unlogged_rule():
    """Returns dropped(manager, level, name): whether dbt's event manager
    would write an event of that level and class name nowhere (None when
    dbt-common lacks what the rule reads). An event is dropped below warn
    level when no logger writes at its level and no callback other than
    dbt's own behaviour-change tracker (which reads only warn-level
    BehaviorChangeEvent) would see it; print events (written as errors) are
    never dropped."""
    try:
        from dbt_common.events.base_types import EventLevel
    except ImportError:
        return None
    try:
        from dbt_common.events.logger import PRINT_EVENT_NAMES
    except ImportError:
        PRINT_EVENT_NAMES = ("PrintEvent", "ShowNode", "CompiledNode")
    try:
        from dbt.tracking import track_behavior_change_warn
    except ImportError:  # older dbt: no callback of its own
        track_behavior_change_warn = None
    rank = {EventLevel.DEBUG: 10, EventLevel.TEST: 10, EventLevel.INFO: 20, EventLevel.WARN: 30, EventLevel.ERROR: 40}

    def dropped(manager, level, name):
        r = rank.get(level, 40)
        return (
            r < 30
            and name not in PRINT_EVENT_NAMES
            and all(cb is track_behavior_change_warn for cb in manager.callbacks)
            and all(rank.get(getattr(lg, "level", None), 0) > r for lg in manager.loggers)
        )

    return dropped


def skip_unlogged_events():
    """dbt turns every event into a protobuf message before asking its
    loggers whether they want it: ~130 events an invocation, most of them
    debug-level (SQL, connections, cache), ~15 ms of CPU an invocation when
    no logger writes below warn (the worker's stdout only feeds crash
    reports). Drop an event that unlogged_rule says no logger or callback
    would see. Events at warn or above, print events (written as errors)
    and anything --warn-error may turn into an error go through dbt
    unchanged."""
    EventManager, fire = patch_point("dbt_common.events.event_manager:EventManager.fire_event", "self", "e", "level")
    dropped = unlogged_rule()
    if dropped is None or fire is None:
        return False

    # Older dbt-common takes (e, level) only; newer adds node and
    # force_warn_or_error_handling. Anything passed beyond level goes
    # through unchanged, and a forced warn-or-error is never dropped.
    def fire_event(self, e, level=None, *args, **kwargs):
        if (
            not args
            and not kwargs.get("force_warn_or_error_handling")
            and dropped(self, level or e.level_tag(), type(e).__name__)
        ):
            return None
        return fire(self, e, level, *args, **kwargs)

    EventManager.fire_event = fire_event
    return True


def lazy_cache_events():
    """dbt's relation cache builds a debug event (a protobuf message) for
    every relation it adds, before the event manager is asked whether
    anyone wants it: one per relation of every schema listed, ~0.1 ms each,
    so on a schema of 1,000 relations ~100 ms of every invocation. Build
    the cache's CacheAction events only when unlogged_rule says a logger
    or callback would see them (the same rule skip_unlogged_events applies
    after building them); the cache itself changes exactly as before."""
    try:
        from dbt_common.events.base_types import EventLevel
        from dbt_common.events.event_manager_client import get_event_manager
    except ImportError:
        return False
    cache, fire = patch_point("dbt.adapters.cache:fire_event", "e", "level")
    dropped = unlogged_rule()
    action = getattr(cache, "CacheAction", None)
    if (
        dropped is None
        or fire is None
        or not isinstance(action, type)
        or action.level_tag(None) != EventLevel.DEBUG
    ):
        return False
    skip = object()

    def CacheAction(*args, **kwargs):
        if dropped(get_event_manager(), EventLevel.DEBUG, "CacheAction"):
            return skip
        return action(*args, **kwargs)

    def fire_event(e, *args, **kwargs):
        if e is skip:
            return None
        return fire(e, *args, **kwargs)

    cache.CacheAction, cache.fire_event = CacheAction, fire_event
    return True


def memo_graph_members():
    """Every invocation's node selector starts from the graph's members:
    every node of the graph checked against the manifest (an enabled
    source, exposure, metric..., or an enabled node that is not empty),
    a pass over the whole project (~10 ms on 1,000 models, and a write to
    every node's memory: in a forked worker, the pages it shared with the
    zygote become its own). The members depend only on the graph, the
    manifest, include_empty_nodes and the selector's _is_graph_member:
    found once for each, and every selector gets the same (read-only)
    subgraph of them, as dbt's __init__ (the same in 1.8-1.11) makes it."""
    NodeSelector, init = patch_point(
        "dbt.graph.selector:NodeSelector.__init__",
        "self", "graph", "manifest", "previous_state", "include_empty_nodes", exact=True,
    )
    if init is None:
        return False
    # (id(networkx graph), id(manifest), include_empty_nodes,
    # _is_graph_member) -> (graph weak reference, manifest weak reference,
    # subgraph). Keyed by the networkx graph: reuse_graph gives every
    # invocation its own dbt Graph over the same one.
    memo = {}

    def __init__(self, graph, manifest, previous_state=None, include_empty_nodes=False):
        inner = getattr(graph, "graph", None)
        key = (id(inner), id(manifest), bool(include_empty_nodes), type(self)._is_graph_member)
        hit = memo.get(key)
        if inner is None or hit is None or hit[0]() is not inner or hit[1]() is not manifest:
            init(self, graph, manifest, previous_state, include_empty_nodes)
            if inner is None:
                return
            if hit is None and len(memo) >= 4 * MAX_MANIFESTS:
                memo.pop(next(iter(memo)))
            try:
                memo[key] = (weakref.ref(inner), weakref.ref(manifest), self.graph)
            except TypeError:  # not weakly referable: not kept
                memo.pop(key, None)
            return
        super(NodeSelector, self).__init__(manifest, previous_state)
        self.full_graph = graph
        self.include_empty_nodes = include_empty_nodes
        self.graph = hit[2]

    NodeSelector.__init__ = __init__

    @fork_warmer
    def warm(manifest):
        # The members the run, seed, test, snapshot and build selectors
        # check (without empty nodes, with NodeSelector's own check), over
        # the graphs linked for manifest (warm_forks's ls found its own,
        # with empty nodes).
        from dbt.graph.graph import Graph

        for (_, _, empty, check), (inner, man, _) in list(memo.items()):
            inner = inner()
            if empty and man() is manifest and inner is not None and check is NodeSelector._is_graph_member:
                NodeSelector(Graph(inner), manifest, None, False)

    return True


def index_selection():
    """dbt resolves an invocation's --select by running every criterion of
    it over every node of the project: dbtorch's one-node selector
    (fqn:<fqn>,resource_type:<type>,package:<package>, dbtargv.Selector)
    costs three passes over the whole manifest, ~35 ms an invocation on
    1,000 models, for one node. Without graph operators or wildcards these
    three criteria depend only on the manifest and the selector's graph:

    - resource_type and package: a criterion's result over the same
      manifest and graph members is the same in every invocation, so it is
      computed by dbt once and kept;
    - fqn: matched by dbt's own method over the nodes that can match,
      found in an index of the manifest's nodes by every part of their fqn
      and its last two parts joined by "_": every rule of dbt's fqn match
      (1.8-1.11, is_selected_node) compares the selector's last part, the
      selector itself or its last two parts joined by "_" with one of those
      without a wildcard.

    The intersection and the union, indirect selection and filtering stay
    dbt's. Anything else (another method, a wildcard, method arguments,
    another node set) goes to dbt's own code."""
    NodeSelector, select = patch_point(
        "dbt.graph.selector:NodeSelector.select_included", "self", "included_nodes", "spec", exact=True
    )
    if select is None:
        return False
    # id(manifest) -> (weak reference, graph members, {(method, value):
    # frozenset}, fqn index or None); a few manifests as the worker keeps.
    memo = {}

    def state(self, included):
        key = id(self.manifest)
        hit = memo.get(key)
        if hit is None or hit[0]() is not self.manifest or hit[1] != included:
            if hit is None and len(memo) >= 2 * MAX_MANIFESTS:
                memo.pop(next(iter(memo)))
            hit = memo[key] = (weakref.ref(self.manifest), included, {}, [None])
        return hit

    def fqn_index(method, included):
        index = {}
        for uid, node in method.all_nodes(included):
            fqn = list(getattr(node, "fqn", None) or [])
            parts = set(fqn) | {p for seg in fqn for p in seg.split(".")}
            if len(fqn) >= 2:
                parts.add("_".join(fqn[-2:]))
            for p in parts:
                index.setdefault(p, set()).add(uid)
        return index

    def select_included(self, included_nodes, spec):
        value = spec.value
        if (
            spec.method not in ("fqn", "resource_type", "package")
            or spec.method_arguments
            or not isinstance(value, str)
            or not value
            or any(c in value for c in "*?[]")
        ):
            return select(self, included_nodes, spec)
        included = frozenset(included_nodes)
        _, _, results, index = state(self, included)
        if spec.method != "fqn":
            key = (str(spec.method), value)
            if key not in results:
                results[key] = frozenset(select(self, included_nodes, spec))
            return set(results[key])
        method = self.get_method(spec.method, spec.method_arguments)
        if index[0] is None:
            index[0] = fqn_index(method, included)
        parts = value.split(".")
        candidates = set()
        for k in (value, parts[-1], "_".join(parts[-2:])):
            candidates |= index[0].get(k, set())
        return set(method.search(candidates, value))

    NodeSelector.select_included = select_included
    return True


class Relations:
    """The relation cache a sole worker keeps for the build it is running
    (keep_relation_cache). request is the (build, manifest key) of the
    invocation being run when it may use a kept cache, else None; cache is
    dbt's RelationsCache kept for key, listed the (database, schema) pairs
    (lowercased) dbt listed into it; used says whether the invocation being
    run had the kept cache as its adapter's."""

    def __init__(self):
        self.request = None
        self.key = None
        self.cache = None
        self.listed = set()
        self.used = False

    def drop(self):
        self.key, self.cache, self.listed = None, None, set()

    def enter(self, build, key, sole):
        """Starts an invocation: of build (may be empty) on manifest key;
        sole says no other process of this executor runs dbt meanwhile. A
        kept cache of another build, another manifest, or kept when the
        worker was not sole is dropped."""
        self.request = (build, key) if build and sole else None
        self.used = False
        if self.request is None or self.request != self.key:
            self.drop()

    def leave(self, ok):
        """Ends the invocation: the cache is kept only when it succeeded
        and ran with the kept (or newly listed) cache."""
        if self.request is None or not ok or not self.used:
            self.drop()
        self.request = None


def has_project_hooks(manifest):
    """Whether the project declares on-run-start or on-run-end hooks (dbt
    parses them into operation nodes)."""
    return any(str(getattr(n, "resource_type", "")) == "operation" for n in manifest.nodes.values())


def cheap_behavior_source():
    """Every invocation registers its adapter, and each of the adapter's
    behavior flags names the module that declared it: dbt_common finds that
    module by walking the call stack with inspect.stack(), which reads the
    source line of every frame (~2 ms a flag, six flags on dbt-postgres),
    and does so also for a flag that names its source. The same module is
    found by walking the frames: a frame whose globals name a loaded module
    whose file is the frame's own file is of that module (inspect.getmodule
    maps a frame to the module of its file); any other frame is placed by
    inspect.getmodule itself."""
    owner, source = patch_point("dbt_common.behavior_flags:BehaviorFlagRendered._default_source", exact=True)
    if source is None:
        return False
    own = owner.__module__

    def same_file(a, b):
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))

    def _default_source():
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            module = sys.modules.get(name) if isinstance(name, str) else None
            path = getattr(module, "__file__", None)
            if not (isinstance(path, str) and same_file(path, frame.f_code.co_filename)):
                module = inspect.getmodule(frame)
            if module is not None and module.__name__ != own:
                return module.__name__
            frame = frame.f_back
        return "Unknown"

    owner._default_source = staticmethod(_default_source)
    return True


def memo_cache_schemas():
    """Every invocation finds the schemas of the project by making a
    relation of every relational node of it (BaseAdapter._get_cache_schemas):
    to list them into its relation cache without --cache-selected-only,
    and on PostgreSQL again (also with --cache-selected-only, as every
    dbtorch request runs) to link the listed relations
    (_link_cached_relations): ~35-55 ms of each invocation on 1,000
    models on PostgreSQL (by hand, the invocations with and without the
    memo), and a write to every node's memory (in a forked worker, the pages it
    shared with the zygote become its own). Those schemas depend only on
    the manifest's nodes, the adapter's relation class and the project's
    quoting: they are found once per manifest (the same node list is
    passed to dbt each time, and the schemas found for that list are
    kept, per relation class and quoting); with --cache-selected-only the
    listed schemas stay the invocation's own (required_schemas), as in
    dbt. Not with --defer, which changes the manifest's nodes in the
    invocation."""
    try:
        from dbt.flags import get_flags
    except ImportError:
        return False
    GraphRunnableTask, populate = patch_point(
        "dbt.task.runnable:GraphRunnableTask.populate_adapter_cache", "self", "adapter", "required_schemas", exact=True
    )
    BaseAdapter, schemas_of = patch_point(
        "dbt.adapters.base.impl:BaseAdapter._get_cache_schemas", "self", "relation_configs", exact=True
    )
    if populate is None or schemas_of is None:
        return False
    # id(manifest) -> (weak reference, node list, {(relation class,
    # quoting): frozenset of schema relations}); a few manifests as the
    # worker keeps.
    memo = {}

    def cachable(manifest):
        hit = memo.get(id(manifest))
        if hit is None or hit[0]() is not manifest:
            if hit is None and len(memo) >= 2 * MAX_MANIFESTS:
                memo.pop(next(iter(memo)))
            nodes = [
                node
                for node in manifest.nodes.values()
                if (node.is_relational and not node.is_ephemeral_model and not node.is_external_node)
            ]
            hit = memo[id(manifest)] = (weakref.ref(manifest), nodes, {})
        return hit

    def populate_adapter_cache(self, adapter, required_schemas=None):
        if not getattr(self.args, "populate_cache", True) or getattr(self.args, "defer", False) or self.manifest is None:
            return populate(self, adapter, required_schemas)
        _, nodes, _ = cachable(self.manifest)
        start = time.perf_counter()
        # As dbt's populate_adapter_cache, with the kept list.
        if get_flags().CACHE_SELECTED_ONLY is True:
            adapter.set_relations_cache(nodes, required_schemas=required_schemas)
        else:
            adapter.set_relations_cache(nodes)
        import dbt.tracking

        if dbt.tracking.active_user is not None:
            dbt.tracking.track_runnable_timing({"adapter_cache_construction_elapsed": time.perf_counter() - start})
        return None

    def _get_cache_schemas(self, relation_configs):
        for _, nodes, found in list(memo.values()):
            if relation_configs is nodes:
                try:
                    key = (self.Relation, json.dumps(self.config.quoting, sort_keys=True, default=str))
                except (AttributeError, TypeError, ValueError):
                    break
                if key not in found:
                    found[key] = frozenset(schemas_of(self, relation_configs))
                return set(found[key])
        return schemas_of(self, relation_configs)

    GraphRunnableTask.populate_adapter_cache = populate_adapter_cache
    BaseAdapter._get_cache_schemas = _get_cache_schemas

    @fork_warmer
    def warm(manifest):
        # With the adapters warm_forks's ls registered: the invocations
        # register theirs of the same relation class and quoting.
        from dbt.adapters.factory import FACTORY

        _, nodes, _ = cachable(manifest)
        for adapter in list(FACTORY.adapters.values()):
            adapter._get_cache_schemas(nodes)

    return True


def keep_relation_cache(relations):
    """Every invocation lists every relation of its nodes' schemas into a
    new relation cache (populate_adapter_cache): on a schema of 1,000
    relations ~150 ms on DuckDB, the largest per-invocation cost that grows
    with the project. One `dbt build` lists once and keeps its cache up to
    date as its nodes create, rename and drop relations. A sole worker (the
    executor's only one: nothing else of the build runs dbt meanwhile) does
    the same within one build: the cache dbt listed and updated in one
    invocation becomes the next one's, and only schemas not listed yet in
    the build are listed. It answers as one dbt build's cache would: a
    relation changed outside dbt during the build is not seen.

    On any doubt the kept cache is dropped and the next invocation lists
    afresh, as dbt does: another build, another manifest (vars), a worker
    that is not sole, an invocation that failed or raised (a failed
    materialization may leave the cache ahead of a rolled-back
    transaction), an invocation that did not run with the kept cache, an
    invocation that runs the project's hooks and any hooks or show request
    (arbitrary SQL the cache does not see), and dbt asking for every schema instead
    of the selected ones (no --cache-selected-only)."""
    try:
        from dbt.flags import get_flags
    except ImportError:
        return False
    GraphRunnableTask, populate = patch_point(
        "dbt.task.runnable:GraphRunnableTask.populate_adapter_cache", "self", "adapter", "required_schemas", exact=True
    )
    if populate is None:
        return False

    def schema_key(r):
        return (r.database.lower() if r.database else r.database, r.schema.lower())

    def populate_adapter_cache(self, adapter, required_schemas=None):
        if relations.request is None:
            return populate(self, adapter, required_schemas)
        enabled = bool(getattr(self.args, "populate_cache", True))
        selected_only = get_flags().CACHE_SELECTED_ONLY is True
        if enabled and (required_schemas is None or not selected_only):
            # Every schema of the project: not what a kept cache holds.
            relations.drop()
            return populate(self, adapter, required_schemas)
        if relations.cache is None:
            if not enabled:
                # dbt test without the cache: nothing to keep.
                return populate(self, adapter, required_schemas)
            populate(self, adapter, required_schemas)
            relations.key, relations.cache = relations.request, adapter.cache
            relations.listed = {schema_key(r) for r in required_schemas if r.schema}
            relations.used = True
            return None
        adapter.cache = relations.cache
        relations.used = True
        if not enabled:
            return None
        missing = {r for r in required_schemas if r.schema and schema_key(r) not in relations.listed}
        if missing:
            populate(self, adapter, missing)
            relations.listed |= {schema_key(r) for r in missing}
        return None

    GraphRunnableTask.populate_adapter_cache = populate_adapter_cache
    return True


def prefilter_relation_match():
    """dbt finds a relation in its relation cache (adapter.get_relation,
    which a materialization calls two or three times through
    load_cached_relation) by asking every cached relation of the schema
    whether it matches (BaseRelation.matches, ~10 us each): on a schema of
    1,100 relations ~11 ms of every lookup, ~30 ms of CPU in every model's
    run. A relation matches, exactly or approximately (dbt then raises
    ApproximateMatchError), only when its identifier equals the searched
    one in matches' approximate comparison (lowered, quote characters
    stripped), so only those are asked: the same matches, in the same
    order, and the same errors."""
    BaseAdapter, make_match = patch_point(
        "dbt.adapters.base.impl:BaseAdapter._make_match", "self", "relations_list", "database", "schema", "identifier", exact=True
    )
    if make_match is None:
        return False

    def _make_match(self, relations_list, database, schema, identifier):
        if not isinstance(identifier, str) or len(relations_list) < 2:
            return make_match(self, relations_list, database, schema, identifier)
        wanted = {}
        kept = []
        for r in relations_list:
            q = r.quote_character
            w = wanted.get(q)
            if w is None:
                w = wanted[q] = identifier.lower().strip(q)
            # str(r.path.get_lowered_part(Identifier)).strip(q), inlined
            ident = r.path.identifier
            if str(ident.lower() if ident is not None else None).strip(q) == w:
                kept.append(r)
        return make_match(self, kept, database, schema, identifier)

    BaseAdapter._make_match = _make_match
    return True


def cache_query_comment():
    """dbt compiles the query-comment template with Jinja in every
    invocation (~3 ms). Compile each distinct template once; every
    invocation still gets its own Template with its own context."""
    try:
        from dbt_common.clients.jinja import BaseMacroGenerator, get_environment
    except ImportError:
        return False
    cls, init = patch_point("dbt.adapters.clients.jinja:QueryStringGenerator.__init__", "self", "template_str", "context")
    if init is None or not hasattr(cls, "get_template"):
        return False
    codes = {}

    def __init__(self, template_str, context):
        BaseMacroGenerator.__init__(self, context)
        self.template_str = template_str
        env = get_environment()
        code = codes.get(template_str)
        if code is None:
            code = codes[template_str] = env.compile(template_str)
        self.template = env.template_class.from_code(env, code, env.make_globals(self.context), None)

    cls.__init__ = __init__
    return True

def reset_compilation(manifest):
    """dbt compiles nodes in place on the manifest it is given. A node
    compiled by an earlier request keeps extra_ctes_injected=True, and
    compiling it again skips injecting the CTEs of the ephemeral models it
    reads ("__dbt__cte__x does not exist"). Reset that state so every
    request compiles from scratch, as a fresh dbt would."""
    for node in manifest.nodes.values():
        if getattr(node, "extra_ctes_injected", False):
            try:
                node.extra_ctes_injected = False
                node.extra_ctes = []
            except AttributeError:  # node types without the fields
                pass


class ProjectHooks:
    """Whether dbt tasks run the project's on-run-start and on-run-end
    hooks (off: they find none)."""

    def __init__(self):
        self.off = False


def suppress_project_hooks(hooks):
    """dbt runs the project's on-run-start and on-run-end hooks in every
    run, build, seed, snapshot and test invocation; an orchestrated build
    runs them once (run_project_hooks) and its node invocations must run
    none. While hooks.off is set, RunTask (and every task built on it)
    finds no hooks, so before_run and after_run run none; everything else
    they do (schemas, relation cache) is unchanged. Not one of PATCHES:
    it decides what the invocation does, not how fast, so it stays on
    with $DBTORCH_WORKER_PATCHES=off."""
    RunTask, find = patch_point("dbt.task.run:RunTask.get_hooks_by_type", "self", "hook_type", exact=True)
    if find is None:
        return False

    def get_hooks_by_type(self, hook_type):
        if hooks.off:
            return []
        return find(self, hook_type)

    RunTask.get_hooks_by_type = get_hooks_by_type
    return True


def hooks_task():
    """dbt's BuildTask when it has what run_project_hooks calls, else
    None."""
    try:
        from dbt.task.build import BuildTask
    except ImportError:
        return None
    if not (
        takes(BuildTask.before_run, "self", "adapter", "selected_uids", exact=True)
        and takes(BuildTask.after_run, "self", "adapter", "results", exact=True)
        and takes(BuildTask.get_result, "self", "results", "elapsed_time", "generated_at", exact=True)
    ):
        return None
    return BuildTask


def result_node(manifest, unique_id):
    """The manifest's node, unit test, function, exposure, ... of unique_id,
    or None."""
    for section in ("nodes", "unit_tests", "functions", "exposures", "saved_queries", "sources", "semantic_models", "metrics"):
        node = (getattr(manifest, section, None) or {}).get(unique_id)
        if node is not None:
            return node
    return None


def build_results(manifest, entries):
    """dbt RunResults for the build's results, given in run_results.json's
    shape: what dbt build gives on-run-end as `results`. Each result's node
    is a shallow copy of the manifest's, with the compiled code the build
    ran (the manifest's own nodes stay uncompiled). Results of nodes the
    manifest does not know are left out."""
    from dbt.artifacts.schemas.results import NodeStatus, TimingInfo
    from dbt.artifacts.schemas.run import RunResult

    def when(s):
        if not s:
            return None
        from datetime import datetime

        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return t.replace(tzinfo=None)

    out = []
    for e in entries:
        node = result_node(manifest, e.get("unique_id"))
        if node is None:
            continue
        node = shallow_copy(node)
        if e.get("compiled_code") and hasattr(node, "compiled_code"):
            node.compiled = True
            node.compiled_code = e["compiled_code"]
        try:
            status = NodeStatus(e.get("status"))
        except ValueError:
            status = e.get("status")
        timing = [TimingInfo(name=t.get("name"), started_at=when(t.get("started_at")), completed_at=when(t.get("completed_at"))) for t in e.get("timing") or []]
        out.append(
            RunResult(
                status=status,
                timing=timing,
                thread_id=e.get("thread_id") or "dbtorch",
                execution_time=e.get("execution_time") or 0.0,
                adapter_response=e.get("adapter_response") or {},
                message=e.get("message"),
                failures=e.get("failures"),
                node=node,
                batch_results=None,
            )
        )
    return out


class run_project_hooks:
    """A context in which `dbt build` runs one phase of the project's hooks
    and nothing else, through dbt's own machinery: on-run-start as dbt
    build's before_run does it (the schemas of the build's nodes created,
    the relation cache filled, then the hooks), on-run-end as its after_run
    does it, given the build's results. The task's results are the hooks'
    (dbt's RunResults of operation nodes). ok is False when this dbt's
    BuildTask is not the one this was written for."""

    def __init__(self, hooks, manifest, phase, nodes, results):
        self.hooks, self.manifest, self.phase = hooks, manifest, phase
        self.nodes, self.results = frozenset(nodes), results
        self.task = hooks_task()
        self.ok = self.task is not None and phase in ("on-run-start", "on-run-end")

    def __enter__(self):
        if not self.ok:
            return self
        from datetime import datetime, timezone

        from dbt.adapters.factory import get_adapter
        from dbt_common.events.contextvars import task_contextvars

        ctx = self

        def run(task):
            results = build_results(ctx.manifest, ctx.results) if ctx.phase == "on-run-end" else None
            adapter = get_adapter(task.config)
            task.started_at = time.time()
            with task_contextvars(project_root=task.config.project_root):
                try:
                    if results is None:
                        task.before_run(adapter, ctx.nodes)
                    else:
                        task.after_run(adapter, results)
                finally:
                    adapter.cleanup_connections()
            return task.get_result(
                results=task.node_results,
                elapsed_time=time.time() - task.started_at,
                generated_at=datetime.now(timezone.utc).replace(tzinfo=None),
            )

        self.saved = self.task.__dict__.get("run")
        self.task.run = run
        self.hooks.off = False
        return self

    def __exit__(self, *exc):
        if not self.ok:
            return False
        if self.saved is None:
            del self.task.run
        else:
            self.task.run = self.saved
        return False


class Sessions:
    """The build session being served (build_session): active is the
    Session whose dbt task runs on its thread, or None."""

    def __init__(self):
        self.active = None

    def claim(self, task):
        """The active session when task is its dbt task (the task run on
        the session's own thread, not claimed yet), else None."""
        s = self.active
        if s is None or s.thread is not threading.current_thread() or s.task is not None:
            return None
        return s


def schema_key(r):
    """A relation's (database, schema), lowercased: how dbt compares
    schemas."""
    return ((r.database or "").lower(), (r.schema or "").lower())


class Session:
    """One long-lived `dbt build` task that runs nodes on request, the way
    `dbt build --threads N` runs its queue (build_session). The task is
    created by one dbtRunner(manifest=...).invoke of a `dbt build` command
    line (its --threads is N) on the session's own thread; its
    execute_nodes serves requests instead of dbt's graph queue: for each
    request (one node, or a wave's nodes) it creates the nodes' schemas and
    lists them into the relation cache when the session has not yet (as
    dbt build's before_run does for all its nodes at once), builds each
    node's runner with task.get_runner and submits task.call_runner to the
    task's DbtThreadPool; when the request's nodes have all ended their
    results are replied by the request's id with one run_results.json
    (task.get_result; in the reply, see run_results_encoder). The relation
    cache, the adapter and its per-thread connections are the session's, as
    they are one dbt build's.
    Nothing else runs dbt in the process while a session lives (global
    flags and adapters are per process)."""

    def __init__(self, key, reply):
        self.key, self.reply = key, reply
        self.requests = queue.Queue()
        self.lock = threading.Lock()
        self.inflight = {}  # request id -> its Group (None: not prepared yet)
        self.cancelled = set()  # ids replied as cancelled before they started
        self.closed = False
        self.serving = threading.Event()
        self.task = self.adapter = self.thread = self.error = None
        self.listed = set()
        self.own_schemas = False
        self.dir = None
        self.encode = run_results_encoder()

    def start(self, sessions, manifest, args, root):
        """Starts the session's dbt task (args: a `dbt build` command line
        selecting one node, without target and log paths; root: where the
        session's directories go) and waits until it serves requests.
        Returns False when dbt ended before (self.error says why)."""
        from dbt.cli.main import dbtRunner

        self.dir = tempfile.mkdtemp(prefix="session-", dir=root or None)
        args = list(args) + ["--target-path", os.path.join(self.dir, "target"), "--log-path", os.path.join(self.dir, "logs")]

        def run():
            try:
                res = dbtRunner(manifest=manifest).invoke(args)
                if res.exception is not None:
                    self.error = error_text(res.exception)
            except BaseException as e:  # noqa: BLE001 - reported by start or end
                self.error = error_text(e)
            finally:
                self.drain("the build session ended: %s" % (self.error or "dbt returned"))
                self.serving.set()

        self.thread = threading.Thread(target=run, name="dbtorch-session", daemon=True)
        sessions.active = self
        self.thread.start()
        self.serving.wait()
        if self.task is None:
            sessions.active = None
            self.thread.join()
            self.cleanup()
            return False
        return True

    def submit(self, req):
        """Queues a node request; False when the session no longer takes
        requests."""
        with self.lock:
            if self.closed:
                return False
            self.inflight[req["id"]] = None
        self.requests.put(req)
        return True

    def alive(self):
        return not self.closed and self.thread is not None and self.thread.is_alive()

    def end(self, sessions):
        """Waits for the in-flight nodes, ends the dbt task and removes the
        session's directories."""
        self.requests.put(None)
        if self.thread is not None:
            self.thread.join()
        sessions.active = None
        self.cleanup()

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def drain(self, why):
        """Closes the session to new requests and answers the queued ones
        with why."""
        with self.lock:
            self.closed = True
        while True:
            try:
                req = self.requests.get_nowait()
            except queue.Empty:
                return
            if req is not None:
                self.finish(req, {"success": False, "error": why})

    def finish(self, req, msg):
        with self.lock:
            self.inflight.pop(req["id"], None)
            if req["id"] in self.cancelled:
                self.cancelled.discard(req["id"])
                return
        msg.update({"id": req["id"], "type": "done", "elapsed": time.monotonic() - req["_begin"]})
        self.reply(msg)

    def cancel(self, rid):
        """Cancels request rid when it is the session's (True): when none
        of its nodes has started it is answered at once and none runs;
        else its nodes not started never run, and each running one has its
        thread's connection cancelled (dbt's connection manager keys
        connections by thread): its runner reports what dbt reports for a
        cancelled query, and the request is answered when its running
        nodes have ended."""
        with self.lock:
            if rid not in self.inflight:
                return False
            group = self.inflight[rid]
            if group is not None:
                group.cancelled = True
            if group is None or not group.ran:
                self.cancelled.add(rid)
                self.reply({"id": rid, "type": "done", "success": False, "error": "cancelled before it started", "elapsed": 0})
                return True
            idents = list(group.running)
        adapter = self.adapter
        conns = adapter.connections
        for ident in idents:
            with conns.lock:
                conn = conns.thread_connections.get((os.getpid(), ident))
            if conn is None or getattr(conn, "handle", None) is None:
                continue
            try:
                with adapter.connection_named("dbtorch_cancel"):
                    conns.cancel(conn)
            except Exception as e:  # noqa: BLE001 - the parent kills the worker after its grace
                print("dbtorch worker: cancelling %s failed: %s" % (rid, error_text(e)), file=sys.stderr)
        return True

    def serve(self, task):
        """The session task's execute_nodes: runs requests until end."""
        from dbt.adapters.factory import get_adapter
        from dbt.graph.thread_pool import DbtThreadPool
        from dbt_common.context import get_invocation_context

        self.task, self.adapter = task, get_adapter(task.config)
        first = frozenset(n.unique_id for n in task._flattened_nodes or [])
        theirs = task.get_model_schemas(self.adapter, first)
        # schemas_of stands for dbt's get_model_schemas only where it
        # answers as dbt does for the node the session started with.
        self.own_schemas = self.schemas_of(task, self.adapter, [result_node(task.manifest, uid) for uid in first]) == theirs
        if task.args.populate_cache:
            # before_run listed the schemas of the node the session was
            # started with.
            self.listed = {schema_key(r) for r in theirs if r.schema}
        pool = DbtThreadPool(task.config.threads, task._pool_thread_initializer, [get_invocation_context()])
        self.serving.set()
        try:
            while True:
                req = self.requests.get()
                if req is None:
                    break
                try:
                    runners = self.prepare(task, req)
                except Exception as e:  # noqa: BLE001 - reported to the parent
                    self.finish(req, {"success": False, "error": error_text(e)})
                    continue
                group = Group(len(runners))
                with self.lock:
                    if req["id"] in self.inflight:
                        self.inflight[req["id"]] = group
                    group.cancelled = req["id"] in self.cancelled
                for k, runner in enumerate(runners):
                    pool.apply_async(self.run_node, args=(task, runner, req, group, k))
        finally:
            self.drain("the build session ended")
            pool.close()
            pool.join()
        return task.node_results

    def prepare(self, task, req):
        """What dbt's before_run does for a request's nodes, once per
        session: their schemas created and listed into the relation cache;
        then their runners, in the request's order."""
        uids = req["nodes"]
        nodes = []
        for uid in uids:
            node = result_node(task.manifest, uid)
            if node is None:
                raise ValueError("no node %s in the manifest" % uid)
            # A node requested again (a retry) compiles from scratch, as in
            # a new invocation (reset_compilation).
            if getattr(node, "extra_ctes_injected", False):
                node.extra_ctes_injected = False
                node.extra_ctes = []
            nodes.append(node)
        adapter = self.adapter
        if self.own_schemas:
            required = self.schemas_of(task, adapter, nodes)
        else:
            required = task.get_model_schemas(adapter, set(uids))
        if required:
            with adapter.connection_named("master"):
                task.create_schemas(adapter, required)
                missing = {r for r in required if r.schema and schema_key(r) not in self.listed}
                if missing and task.args.populate_cache:
                    task.populate_adapter_cache(adapter, missing)
                    self.listed |= {schema_key(r) for r in missing}
        return [task.get_runner(node) for node in nodes]

    def schemas_of(self, task, adapter, nodes):
        """task.get_model_schemas(adapter, <the nodes' unique_ids>): the
        schemas of the nodes' relations, without dbt's walk over every
        node of the manifest (~1.5 ms a request on 1,000 models): each
        relational, non-ephemeral node's relation, and each function's
        (dbt build's own addition), without its identifier."""
        functions = getattr(task.manifest, "functions", None) or {}
        out = set()
        for node in nodes:
            if node is None:
                continue
            uid = node.unique_id
            if uid in functions:
                out.add(adapter.Relation.create_from(task.config, functions[uid]).without_identifier())
            elif uid in task.manifest.nodes and node.is_relational and not node.is_ephemeral:
                out.add(adapter.Relation.create_from(task.config, node).without_identifier())
        return out

    def run_node(self, task, runner, req, group, k):
        """Runs node k of request req (its Group: group) on a thread of the
        session's pool; the last of the request's nodes to end replies."""
        ident = threading.get_ident()
        with self.lock:
            run = not group.cancelled
            if run:
                group.ran = True
                group.running.add(ident)
        if run:
            try:
                group.results[k] = task.call_runner(runner)
                # Each request is a build of its own nodes: a failure must
                # not stop the session (fail-fast, raise_on_first_error).
                task._raise_next_tick = None
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                group.error = group.error or error_text(e)
        with self.lock:
            group.running.discard(ident)
            group.left -= 1
            last = group.left == 0
        if last:
            self.complete(task, req, group)

    def complete(self, task, req, group):
        """Replies to a request whose nodes have all ended with their
        one-invocation run_results.json (those that ran): in the reply
        (run_results_encoder), else written to its results_path."""
        from datetime import datetime, timezone

        results = [r for r in group.results if r is not None]
        msg = {"success": False, "error": group.error}
        try:
            if results:
                out = task.get_result(results=results, elapsed_time=time.time() - group.begin,
                                      generated_at=datetime.now(timezone.utc).replace(tzinfo=None))
                if self.encode is not None:
                    msg["run_results"] = self.encode(out)
                elif req.get("results_path"):
                    path = req["results_path"]
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    out.write(path)
                msg["success"] = group.error is None and len(results) == len(group.results) and bool(task.interpret_results(results))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            msg = {"success": False, "error": error_text(e)}
        self.finish(req, msg)


def run_results_encoder():
    """A function that returns, as text, the run_results.json that
    result.write(path) writes for a RunExecutionResult (raising TypeError
    for any other result), or None when this dbt's artifact classes are not
    the ones this was written for. A session sends it in its reply instead
    of writing a file: with the session's threads holding the GIL in turn,
    each system call of writing a file (mkdir, open, write, close) waits
    for the GIL again, ~9 ms a request for ~1 ms of work."""
    try:
        from dbt.artifacts.schemas.run import RunExecutionResult, RunResultsArtifact
        from dbt_common.utils.encoding import JSONEncoder
    except ImportError:
        return None
    if "write" not in RunResultsArtifact.__dict__:
        return None

    def encode(result):
        if type(result) is not RunExecutionResult:
            raise TypeError(f"run_results: {type(result).__name__} is not a RunExecutionResult")
        artifact = RunResultsArtifact.from_execution_results(
            results=result.results, elapsed_time=result.elapsed_time, generated_at=result.generated_at, args=result.args
        )
        # RunResultsArtifact.write's dict, encoded as dbt's write_json does.
        return json.dumps(artifact.to_dict(omit_none=False), cls=JSONEncoder)

    return encode


class Group:
    """One session request's nodes: their results in the request's order
    (None: not run), how many have not ended, the threads running them,
    whether any started (ran) and whether the request was cancelled."""

    def __init__(self, n):
        self.results = [None] * n
        self.left = n
        self.running = set()
        self.ran = self.cancelled = False
        self.error = None
        self.begin = time.time()


def build_session(sessions):
    """Per node, a dbt invocation pays for its command line, the profile
    and project, the adapter's registration, new connections, the relation
    cache's listing and the graph's queue: ~0.1-0.3 s beyond the node's own
    work, in every invocation, which dbt build pays once. A build session
    (Session) runs a build's node requests inside one `dbt build` task as
    dbt build runs its nodes (the same runners, thread pool, connections
    and relation cache), N at a time. This patch makes the session's task
    serve requests: GraphRunnableTask.execute_nodes of the task a Session
    started (on its thread) is Session.serve; every other task runs
    dbt's."""
    GraphRunnableTask, execute = patch_point("dbt.task.runnable:GraphRunnableTask.execute_nodes", "self", exact=True)
    uses = [
        patch_point("dbt.task.runnable:GraphRunnableTask.call_runner", "self", "runner", exact=True),
        patch_point("dbt.task.runnable:GraphRunnableTask.get_runner", "self", "node", exact=True),
        patch_point("dbt.task.runnable:GraphRunnableTask.get_result", "self", "results", "elapsed_time", "generated_at", exact=True),
        patch_point("dbt.task.runnable:GraphRunnableTask.get_model_schemas", "self", "adapter", "selected_uids", exact=True),
        patch_point("dbt.task.runnable:GraphRunnableTask.create_schemas", "self", "adapter", "required_schemas"),
        patch_point("dbt.task.runnable:GraphRunnableTask.populate_adapter_cache", "self", "adapter", "required_schemas"),
        patch_point("dbt.task.runnable:GraphRunnableTask._pool_thread_initializer", "invocation_context", exact=True),
        patch_point("dbt.graph.thread_pool:DbtThreadPool.apply_async", "self", "func"),
        patch_point("dbt_common.context:get_invocation_context"),
    ]
    if execute is None or any(fn is None for _, fn in uses) or not hasattr(GraphRunnableTask, "interpret_results"):
        return False

    def execute_nodes(self):
        s = sessions.claim(self)
        if s is None:
            return execute(self)
        return s.serve(self)

    GraphRunnableTask.execute_nodes = execute_nodes
    return True


def session_node(manifest, uid):
    """Whether the node can run in a build session: a node of the
    manifest that is neither ephemeral (no result of its own) nor a
    microbatch model (dbt runs those through its own batch scheduling in
    the pool)."""
    node = result_node(manifest, uid)
    if node is None or getattr(node, "is_ephemeral_model", False):
        return False
    config = getattr(node, "config", None)
    return not (
        getattr(config, "materialized", None) == "incremental"
        and getattr(config, "incremental_strategy", None) == "microbatch"
    )


def run_cli(args):
    """dbt's command line (args without the executable) with the project
    hooks off: what `dbt ARGS...` does, minus on-run-start and on-run-end."""
    hooks = ProjectHooks()
    if suppress_project_hooks(hooks):
        hooks.off = True
    else:
        print("dbtorch worker: this dbt's hooks cannot be switched off; they run", file=sys.stderr)
    from dbt.cli.main import cli

    sys.argv = ["dbt"] + list(args)
    sys.exit(cli())


# Every patch, in the order applied, with the dbt-core minor versions it is
# enabled on: (first, last), inclusive. A patch is enabled only on the
# minor versions it was proven on: `make compat` runs the warm executor's
# conformance test (TestWarmPatchedUnpatchedCoreAgree) patched and
# unpatched on dbt-core 1.8.9, 1.9.11 and 1.10.23 (compat/requirements-*.txt)
# and the tests run it on the pinned 1.11.16 (requirements.txt). Widen a
# range only after that test passed on the new version.
PATCHES = [
    ("cache_plugin_discovery", (1, 8), (1, 11)),
    ("cheap_behavior_source", (1, 8), (1, 11)),
    ("skip_graph_diagnostics", (1, 8), (1, 11)),
    ("cache_query_comment", (1, 8), (1, 11)),
    ("reuse_graph", (1, 8), (1, 11)),
    ("skip_unlogged_events", (1, 8), (1, 11)),
    ("remember_schemas", (1, 8), (1, 11)),
    ("lazy_cache_events", (1, 8), (1, 11)),
    ("memo_graph_members", (1, 8), (1, 11)),
    ("index_selection", (1, 8), (1, 11)),
    ("memo_cache_schemas", (1, 8), (1, 11)),
    ("keep_relation_cache", (1, 8), (1, 11)),
    ("prefilter_relation_match", (1, 8), (1, 11)),
    # Proven on 1.11 only (TestWarmPatchedUnpatchedCoreAgree's per-node
    # part, TestWarmSession*); `make compat` has not run it on 1.8-1.10.
    ("build_session", (1, 11), (1, 11)),
]


def dbt_minor():
    """dbt-core's (major, minor), or None when it cannot be told."""
    try:
        from dbt.version import __version__ as version
    except ImportError:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("dbt-core")
        except Exception:  # noqa: BLE001 - no version: treated as unknown
            return None
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def enabled_patches(minor):
    """The names of the patches whose range holds the dbt-core minor
    version minor ((major, minor) or None: none)."""
    if minor is None:
        return []
    return [name for name, first, last in PATCHES if first <= minor <= last]


def apply_patches(builds, minor=None, relations=None, sessions=None):
    """Applies the patches enabled on dbt-core's minor version (minor, when
    given, stands for it) unless $DBTORCH_WORKER_PATCHES is "off" (builds,
    relations and sessions are the state of remember_schemas,
    keep_relation_cache and build_session; relations and sessions default
    to new ones), and
    returns (enabled, applied): the names of the patches enabled on this
    version and of those applied (an enabled patch whose dbt internal has
    another signature is left out)."""
    if os.environ.get("DBTORCH_WORKER_PATCHES", "").lower() == "off":
        return [], []
    if minor is None:
        minor = dbt_minor()
    enabled = enabled_patches(minor)
    if len(enabled) < len(PATCHES):
        off = [name for name, _, _ in PATCHES if name not in enabled]
        print("dbtorch worker: on dbt-core %s these patches were not proven and are off: %s" % (
            "%d.%d" % minor if minor else "(unknown version)", ", ".join(off)), file=sys.stderr)
    applied = []
    for name in enabled:
        fn = globals()[name]
        state = {"remember_schemas": (builds,), "keep_relation_cache": (relations or Relations(),),
                 "build_session": (sessions or Sessions(),)}
        if fn(*state.get(name, ())):
            applied.append(name)
    return enabled, applied


def shallow_copy(manifest):
    """A shallow copy of a Manifest. copy.copy goes through
    Manifest.__reduce_ex__, which in dbt-core 1.11 leaves out
    _saved_query_lookup from its positional arguments, so every lookup
    after it lands in the wrong field (a project with metrics then fails
    with "MetricLookup.find() takes 4 positional arguments but 5 were
    given"); copying the instance's fields directly keeps each in place."""
    dup = object.__new__(type(manifest))
    dup.__dict__.update(manifest.__dict__)
    return dup


def error_text(e):
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def exit_now(code):
    """Ends the worker once its input has ended and nothing runs: the exit
    functions run (dbt-duckdb's closes and checkpoints its database,
    logging flushes its files), then the process exits without the
    interpreter's teardown, which frees every object of the parsed
    manifests one by one (~0.4 s on a 50-model project, more on large
    ones: time a build's command would wait for after its last node)."""
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def read_line(fd, buf):
    """One JSON request line from fd, read without Python's buffered
    stdin (whose read-ahead a forked worker would inherit), and what was
    read after it: (None, b"") at end of input."""
    while b"\n" not in buf:
        data = os.read(fd, 65536)
        if not data:
            return None, b""
        buf += data
    line, _, rest = buf.partition(b"\n")
    if not line.strip():
        return read_line(fd, rest)
    return json.loads(line), rest


def set_parent_death_signal():
    """Asks the kernel to SIGKILL this process when its parent (the
    zygote) ends (Linux prctl PR_SET_PDEATHSIG); False where it cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def stdout_silenced():
    """Descriptor 1 goes to /dev/null inside (what dbt prints to its
    standard output, as the zygote runs it, is of no use), and back
    after."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class DryCursor:
    """A DB-API cursor that runs nothing: every statement succeeds with no
    rows (the zygote's dry run, DryHandle)."""

    description = None
    rowcount = -1
    rownumber = 0
    statusmessage = "SELECT 0"
    query = b""

    def __init__(self, sent):
        self.sent = sent

    def execute(self, sql, bindings=None):
        self.sent.append(sql)

    def executemany(self, sql, seq):
        self.sent.append(sql)

    def fetchall(self):
        return []

    def fetchmany(self, size=None):
        return []

    def fetchone(self):
        return None

    def close(self):
        pass

    def __iter__(self):
        return iter(())


class DryHandle:
    """What a database connection's handle is during the zygote's dry run:
    it opens nothing and sends nothing anywhere; each statement is only
    recorded in sent. Any other attribute an adapter reads is a function
    that does nothing."""

    closed = False
    autocommit = True

    def __init__(self, sent):
        self.sent = sent

    def cursor(self, *args, **kwargs):
        return DryCursor(self.sent)

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def one_node_selector(node):
    """(kind, dbtorch's one-node selector of node) as the per-node
    requests select it (fqn, resource_type and package intersected), or
    None for a node without an fqn or package, or whose fqn has a
    character a selector would read as a pattern."""
    kind = getattr(node, "resource_type", None)
    kind = str(getattr(kind, "value", kind))
    fqn = list(getattr(node, "fqn", None) or [])
    if not fqn or not getattr(node, "package_name", None) or any(c in part for part in fqn for c in "*?[], "):
        return None
    return kind, "fqn:%s,resource_type:%s,package:%s" % (".".join(fqn), kind, node.package_name)


def dry_run_pick(manifest):
    """The one-node selector of the first SQL model materialized as a view
    or a table (the zygote's dry run runs it), or None."""
    for node in manifest.nodes.values():
        language = getattr(node, "language", "sql")
        if str(getattr(language, "value", language)) != "sql":
            continue
        if getattr(getattr(node, "config", None), "materialized", None) not in ("view", "table"):
            continue
        picked = one_node_selector(node)
        if picked is not None and picked[0] == "model":
            return picked[1]
    return None


# The adapters whose every statement goes through a connection's handle
# on the way dry_run takes (a SQL model materialized as a view or a
# table), proven by TestZygoteDryRunSendsNothing (DuckDB) and by hand
# (PostgreSQL). Another adapter may reach its database otherwise.
DRY_RUN_ADAPTERS = ("postgres", "duckdb")


def dry_run(manifest, parse_args, hooks=None):
    """Runs, in the zygote before it forks, one `dbt run` of one model
    (dry_run_pick) as a forked worker's request runs it, against no
    database: every connection dbt opens gets a DryHandle instead of the
    adapter's (dbt opens connections lazily, LazyHandle), so no statement
    leaves the process and every one succeeds with no rows. What dbt does
    once in a process's first run and then keeps (modules imported on
    first use, Python's specialised bytecode, the caches of jinja and the
    macros) is then done here once and shared with every fork, instead of
    copied into each: on 1,000 models on PostgreSQL a fork's private memory
    after its first request goes from ~56 to ~43 MB, after 40 from ~83 to
    ~71 MB (by hand, BENCHMARKS.md). Only on DRY_RUN_ADAPTERS. The project's hooks are off (hooks, when given), the
    schema memo and the kept relation cache are not entered (no build),
    the compiled state is reset after it, dbt's usage statistics are not
    sent for it, and its files go to a temporary directory that is
    removed. Only a speed-up: returns the
    statements dbt sent (an empty list when it did not run), and any
    failure is reported on stderr and otherwise ignored."""
    adapter = getattr(getattr(manifest, "metadata", None), "adapter_type", None)
    if adapter not in DRY_RUN_ADAPTERS or not parse_args or parse_args[0] != "parse":
        return []
    pick = dry_run_pick(manifest)
    if not pick:
        return []
    try:
        from dbt.adapters.contracts.connection import ConnectionState, LazyHandle
        from dbt.cli.main import dbtRunner
    except ImportError:
        return []
    sent = []
    resolve = LazyHandle.resolve

    def dry(self, connection):
        connection.handle = DryHandle(sent)
        connection.state = ConnectionState.OPEN
        return connection

    work = tempfile.mkdtemp(prefix="dbtorch-dry-run-")
    args = (["run"] + list(parse_args[1:]) + ["--select", pick, "--indirect-selection", "empty", "--cache-selected-only",
            "--no-write-json", "--log-level", "warn", "--log-level-file", "none", "--no-send-anonymous-usage-stats",
            "--target-path", os.path.join(work, "target"), "--log-path", os.path.join(work, "logs")])
    LazyHandle.resolve = dry
    if hooks is not None:
        hooks.off = True
    try:
        with stdout_silenced():
            res = dbtRunner(manifest=manifest).invoke(args)
        failed = res.exception
    except Exception as e:  # noqa: BLE001 - only a speed-up
        failed = e
    finally:
        LazyHandle.resolve = resolve
        if hooks is not None:
            hooks.off = False
        reset_compilation(manifest)
        shutil.rmtree(work, ignore_errors=True)
    if failed is not None:
        print("dbtorch zygote: the dry run failed (only a speed-up): %s" % error_text(failed), file=sys.stderr)
    return sent


def warm_forks(manifest, parse_args, hooks=None):
    """Before the zygote forks its first worker: a `dbt ls` over the
    parsed manifest selecting one node of each kind the per-node requests
    run (dbtorch's one-node selector), so that what every invocation builds
    on its first run and then keeps (the linked graph, reuse_graph; the
    selection index and criteria, index_selection; the modules dbt imports
    on first use), and after it what the FORK_WARMERS find (the graph
    members of the run's selectors, memo_graph_members; the schemas of the
    relation cache, memo_cache_schemas), is built once here and shared with every forked worker,
    instead of built again in each of them (~10 MB a worker on 1,000
    models). ls opens no database connection. Only a speed-up: when it
    fails, the workers build what they need themselves. After them, when
    the ls succeeded, the dry run of one model (dry_run, hooks off).
    Returns whether the ls ran and succeeded."""
    if not parse_args or parse_args[0] != "parse":
        return False
    picks = {}
    for node in manifest.nodes.values():
        picked = one_node_selector(node)
        if picked is not None and picked[0] in ("model", "seed", "snapshot", "test"):
            picks.setdefault(*picked)
    if not picks:
        return False
    from dbt.cli.main import dbtRunner

    args = ["ls", "--output", "json", "--output-keys", "unique_id"] + list(parse_args[1:]) + ["--select"] + list(picks.values())
    # The nodes ls prints are of no use: keep them out of the zygote's
    # output, which the parent keeps for its crash reports.
    try:
        with stdout_silenced():
            res = dbtRunner(manifest=manifest).invoke(args)
        failed = error_text(res.exception) if res.exception is not None else None if res.success else "dbt ls failed"
    except Exception as e:  # noqa: BLE001 - only a speed-up
        failed = error_text(e)
    if failed:
        print("dbtorch zygote: warming the forks failed (each worker warms itself): %s" % failed, file=sys.stderr)
    else:
        for warm in FORK_WARMERS:
            try:
                warm(manifest)
            except Exception as e:  # noqa: BLE001 - only a speed-up
                print("dbtorch zygote: warming the forks (%s) failed: %s" % (warm.__qualname__, error_text(e)), file=sys.stderr)
        dry_run(manifest, parse_args, hooks)
    # What the ls built and keeps stays out of the collector's passes, as
    # the parsed manifest does (manifest_for).
    gc.collect()
    gc.freeze()
    return not failed


def zygote_loop(ctl_fd, reply_fd, buf, reply):
    """Serves "fork" requests (see Zygote in the module docstring) until
    the zygote's input ends; then waits for its forked workers and exits.
    Returns only in a forked worker, whose stdin, stdout, stderr and reply
    descriptor are then the ones the parent sent. The parsed manifests,
    frozen out of the garbage collector (gc.freeze), stay shared with the
    zygote page by page until a worker writes to them."""
    import select
    import socket

    ctl = socket.socket(fileno=ctl_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    zygote_pid = os.getpid()
    children = set()

    def reap():
        # Only its own workers: a child that dbt started in the zygote
        # (multiprocessing's resource tracker) is dbt's to wait for.
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)  # not ours to report any more
                continue
            if done == pid:
                children.discard(pid)
                reply({"id": 0, "type": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def fork(req):
        msg, fds, _, _ = socket.recv_fds(ctl, 16, 3)
        if len(fds) != 3:
            for f in fds:
                os.close(f)
            raise RuntimeError("fork: expected 3 file descriptors, got %d" % len(fds))
        if threading.active_count() > 1:
            # A forked worker has only this thread: a lock another held
            # stays held in it.
            print("dbtorch zygote: forking with threads running: %s" % [t.name for t in threading.enumerate()], file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            ctl.close()
            os.setpgid(0, 0)
            if not set_parent_death_signal() and sys.platform.startswith("linux"):
                os._exit(70)
            if os.getppid() != zygote_pid:
                os._exit(70)  # the zygote ended before the prctl
            fin, frep, fout = fds
            os.dup2(fin, 0)
            os.dup2(fout, 1)
            os.dup2(fout, 2)
            os.dup2(frep, reply_fd, inheritable=False)
            for f in fds:
                os.close(f)
            return True
        for f in fds:
            os.close(f)
        try:
            # As the worker does: whichever runs first, it is in its own
            # group before the parent hears of it.
            os.setpgid(pid, pid)
        except OSError:
            pass  # it has ended already (its end is reported)
        children.add(pid)
        reply({"id": req.get("id"), "type": "forked", "pid": pid})
        return False

    while True:
        reap()
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError:
                print("dbtorch zygote: bad request line: %r" % line[:200], file=sys.stderr)
                continue
            if req.get("type") != "fork":
                reply({"id": req.get("id"), "type": "done", "success": False,
                       "error": "the zygote only forks (got %r)" % (req.get("type"),), "elapsed": 0})
                continue
            try:
                if fork(req):
                    return
            except Exception as e:  # noqa: BLE001 - reported to the parent
                reply({"id": req.get("id"), "type": "done", "success": False, "error": error_text(e), "elapsed": 0})
        try:
            ready, _, _ = select.select([0, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                break
            buf += data
    # Input ended: the forked workers' own inputs end too (or have);
    # they die with the zygote, so let them end first.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(children):
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            continue
        reply({"id": 0, "type": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
    exit_now(0)


def main():
    fd = int(os.environ["DBTORCH_WORKER_FD"])
    os.set_inheritable(fd, False)
    out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    write = threading.Lock()

    def reply(msg):
        line = json.dumps(msg) + "\n"
        with write:
            out.write(line)
            out.flush()

    from dbt.cli.main import dbtRunner

    builds = Builds()
    relations = Relations()
    sessions = Sessions()
    enabled, patches = apply_patches(builds, relations=relations, sessions=sessions)
    can_session = "build_session" in patches
    hooks = ProjectHooks()
    can_skip_hooks = suppress_project_hooks(hooks)

    manifests = {}  # key -> Manifest, in insertion order

    def manifest_for(key, parse_args):
        if key in manifests:
            return manifests[key]
        res = dbtRunner().invoke(list(parse_args))
        if not res.success or res.result is None:
            raise RuntimeError("dbt parse failed: %s" % (res.exception or "see dbt's log"))
        if len(manifests) >= MAX_MANIFESTS:
            manifests.pop(next(iter(manifests)))
        manifests[key] = res.result
        # The parsed project lives as long as the worker: keep its objects
        # out of the cyclic garbage collector's full passes (gc.freeze),
        # which would otherwise walk all of them again and again while
        # nodes run, pauses that grow with the project.
        gc.collect()
        gc.freeze()
        return res.result

    def start(req):
        """Runs deps when asked, parses, and returns the manifest."""
        if req.get("deps_args"):
            res = dbtRunner().invoke(list(req["deps_args"]))
            if not res.success:
                raise RuntimeError("dbt deps failed: %s" % (res.exception or "see dbt's log"))
        return manifest_for(req.get("key", ""), req["parse_args"])

    def invoke(req):
        manifest = manifest_for(req.get("key", ""), req["parse_args"])
        reset_compilation(manifest)
        builds.enter(req.get("build"))
        hooks.off = bool(req.get("no_hooks"))
        # Project hooks run arbitrary SQL the relation cache does not see:
        # keep it only across invocations that run none.
        sole = bool(req.get("sole")) and (hooks.off or not has_project_hooks(manifest))
        relations.enter(req.get("build"), req.get("key", ""), sole)
        ok = False
        try:
            res = dbtRunner(manifest=manifest).invoke(list(req["args"]))
            ok = bool(res.success) and res.exception is None
        finally:
            hooks.off = False
            relations.leave(ok)
        return written(res, req.get("results_path"))

    def written(res, path):
        if path and res.result is not None and hasattr(res.result, "write"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            res.result.write(path)
        error = error_text(res.exception) if res.exception is not None else None
        return {"success": bool(res.success), "error": error}

    def project_hooks(req):
        manifest = manifest_for(req.get("key", ""), req["parse_args"])
        reset_compilation(manifest)
        builds.enter(req.get("build"))
        relations.drop()
        with run_project_hooks(hooks, manifest, req.get("phase"), req.get("nodes") or [], req.get("results") or []) as run:
            if not run.ok:
                return {"success": False, "error": "this dbt's project hooks cannot be run apart", "unsupported": True}
            res = dbtRunner(manifest=manifest).invoke(list(req["args"]))
        return written(res, req.get("results_path"))

    def ls(req):
        manifest = manifest_for(req.get("key", ""), req["parse_args"])
        builds.enter(None)
        res = dbtRunner(manifest=manifest).invoke(list(req["args"]))
        if not res.success or res.exception is not None:
            return {"success": False, "error": error_text(res.exception) if res.exception is not None else "dbt ls failed", "ids": None}
        ids = sorted(json.loads(x)["unique_id"] for x in (res.result or []))
        return {"success": True, "error": None, "ids": ids}

    def show(req):
        if "--inline-direct" in req["args"]:
            return show_direct(req)
        # dbt show --inline adds its query to the manifest it is given: give
        # it a copy whose nodes are its own, so that the worker's manifest
        # (and the graph linked for it) never sees the query.
        manifest = shallow_copy(manifest_for(req.get("key", ""), req["parse_args"]))
        manifest.nodes = dict(manifest.nodes)
        builds.enter(None)
        relations.drop()
        res = dbtRunner(manifest=manifest).invoke(list(req["args"]))
        if not res.success or res.exception is not None:
            return {"success": False, "error": error_text(res.exception) if res.exception is not None else "dbt show failed", "rows": None}
        rows = []
        for r in getattr(res.result, "results", None) or []:
            table = getattr(r, "agate_table", None)
            if table is not None:
                rows.extend(["" if v is None else str(v) for v in row] for row in table.rows)
        return {"success": True, "error": None, "rows": rows}

    def show_direct(req):
        # dbt show --inline-direct runs the query on a connection, without
        # the manifest; its rows come back only in the ShowNode event.
        previews = []

        def on_event(e):
            if e.info.name == "ShowNode":
                previews.append(e.data.preview)

        builds.enter(None)
        relations.drop()
        res = dbtRunner(callbacks=[on_event]).invoke(list(req["args"]))
        if not res.success or res.exception is not None:
            return {"success": False, "error": error_text(res.exception) if res.exception is not None else "dbt show failed", "rows": None}
        rows = [["" if v is None else str(v) for v in r.values()] for p in previews for r in json.loads(p)]
        return {"success": True, "error": None, "rows": rows}

    handlers = {"invoke": invoke, "ls": ls, "show": show, "hooks": project_hooks}

    def end_session():
        s = sessions.active
        if s is not None:
            s.end(sessions)
            # The session ran SQL the kept relation cache did not see.
            relations.drop()
            hooks.off = False

    def submit(req):
        """Queues req in the build session (starting one when none runs
        with its key) and returns the session, or returns None when req
        runs on its own."""
        sess = req.get("session")
        nodes = req.get("nodes") or []
        if not (can_session and sess and nodes):
            return None
        s = sessions.active
        if s is not None and (s.key != sess["key"] or not s.alive() or req.get("key", "") not in manifests):
            # Before a parse too: every dbt invocation resets the adapters
            # (adapter_management), the session's connections included.
            end_session()
            s = None
        manifest = manifest_for(req.get("key", ""), req["parse_args"])
        if not all(session_node(manifest, uid) for uid in nodes):
            return None
        if s is None:
            # A session runs no project hooks: the build runs them apart.
            if not (req.get("no_hooks") and can_skip_hooks) and has_project_hooks(manifest):
                return None
            reset_compilation(manifest)
            builds.enter(req.get("build"))
            relations.drop()
            hooks.off = True
            s = Session(sess["key"], reply)
            if not s.start(sessions, manifest, sess["args"], sess.get("dir")):
                hooks.off = False
                print("dbtorch worker: the build session did not start (%s); the node runs on its own" % s.error, file=sys.stderr)
                return None
        return s if s.submit(req) else None

    # Requests are read on a thread of their own, so that a cancel reaches
    # the worker while it runs something. state: ids read and not taken
    # yet (queued), ids cancelled before they ran (skip), and the request
    # the main thread holds with its phase ("deciding" or "running", an
    # invocation of its own).
    incoming = queue.Queue()
    lock = threading.Lock()
    queued, skip, current = set(), set(), [None, None]

    def cancelled_reply(rid):
        reply({"id": rid, "type": "done", "success": False, "error": "cancelled before it started", "elapsed": 0})

    def cancel(rid):
        with lock:
            if rid in queued:
                queued.discard(rid)
                skip.add(rid)
                cancelled_reply(rid)
                return
            if current[0] == rid:
                if current[1] == "deciding":
                    skip.add(rid)
                    return
                # An invocation of its own: what the parent's SIGINT did.
                os.kill(os.getpid(), signal.SIGINT)
                return
        s = sessions.active
        if s is not None:
            s.cancel(rid)

    def read():
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError:
                print("dbtorch worker: bad request line: %r" % line[:200], file=sys.stderr)
                continue
            if req.get("type") == "cancel":
                cancel(req.get("id"))
                continue
            with lock:
                queued.add(req.get("id"))
            incoming.put(req)
        incoming.put(None)

    def take(req):
        """The main thread takes req: False when it was cancelled."""
        with lock:
            rid = req.get("id")
            queued.discard(rid)
            if rid in skip:
                skip.discard(rid)
                return False
            current[:] = [rid, "deciding"]
            return True

    def decided(rid, phase):
        """req goes to the session (phase None) or runs now ("running"):
        False when it was cancelled while the main thread decided."""
        with lock:
            was = rid in skip
            skip.discard(rid)
            current[:] = [rid, phase] if phase and not was else [None, None]
        return not was

    zygote = os.environ.pop("DBTORCH_ZYGOTE_FD", None)
    if zygote is None:
        threading.Thread(target=read, name="dbtorch-reader", daemon=True).start()
    try:
        if zygote is None:
            req = incoming.get()
        else:
            # No reader thread before the forks: a forked worker has only
            # the thread that forked it.
            req, rest = read_line(0, b"")
        if req is None:
            return
        with lock:
            queued.discard(req.get("id"))
        begin = time.monotonic()
        try:
            manifest = start(req)
        except Exception as e:  # noqa: BLE001 - reported to the parent
            reply({"id": req.get("id", 0), "type": "fatal", "error": error_text(e)})
            sys.exit(3)
        warmed = zygote is not None and warm_forks(manifest, req["parse_args"], hooks)
        reply({"id": req.get("id", 0), "type": "ready", "pid": os.getpid(), "elapsed": time.monotonic() - begin, "patches": patches,
               "enabled": enabled, "hooks": can_skip_hooks, "session": can_session, "warmed": warmed})
        if zygote is not None:
            # Returns in a forked worker only, its descriptors in place.
            zygote_loop(int(zygote), fd, rest, reply)
            threading.Thread(target=read, name="dbtorch-reader", daemon=True).start()
        while True:
            req = incoming.get()
            if req is None:
                break
            if not take(req):
                continue
            req["_begin"] = begin = time.monotonic()
            rtype = req.get("type", "invoke")
            s = None
            if rtype == "invoke":
                try:
                    s = submit(req)
                except Exception as e:  # noqa: BLE001 - the node runs on its own, which reports it
                    print("dbtorch worker: build session: %s" % error_text(e), file=sys.stderr)
                    s = None
            if s is not None:
                if not decided(req["id"], None):
                    s.cancel(req["id"])
                continue
            end_session()
            if not decided(req["id"], "running"):
                cancelled_reply(req["id"])
                continue
            handler = handlers.get(rtype)
            try:
                if handler is None:
                    raise ValueError("unknown request type %r" % (rtype,))
                msg = handler(req)
            except Exception as e:  # noqa: BLE001 - reported to the parent
                msg = {"success": False, "error": error_text(e)}
            sys.stdout.flush()
            with lock:
                current[:] = [None, None]
            msg.update({"id": req["id"], "type": "done", "elapsed": time.monotonic() - begin})
            reply(msg)
        end_session()
        out.close()
        exit_now(0)
    except KeyboardInterrupt:
        # The parent's SIGINT (a cancelled invocation): dbt has cancelled
        # its queries; the parent retires this worker.
        sys.exit(130)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "dbt":
        run_cli(sys.argv[2:])
    main()
