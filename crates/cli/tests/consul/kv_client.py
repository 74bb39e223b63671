"""Consul's Python client (py-consul) against a raftkv cluster: the KV calls, check-and-set,
flags, recursive reads, key listings with a separator, blocking queries that wake on a change
and time out without one, consistency modes, transactions, sessions and locks (a lock handed
over when its holder's session expires), and the status endpoints.

Usage: kv_client.py HOST:PORT [HOST:PORT ...] (the members' client addresses; the first is
written through, the others read from). Exits non-zero on the first failed check.
"""

import base64
import json
import sys
import threading
import time

import consul


def client(address, **options):
    host, port = address.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port), **options)


def main():
    addresses = sys.argv[1:]
    c = client(addresses[0])
    others = [client(a) for a in addresses[1:]]

    # put, get, flags, raw values as bytes
    assert c.kv.put("app/config", "v1", flags=42) is True
    index, item = c.kv.get("app/config")
    assert item["Key"] == "app/config", item
    assert item["Value"] == b"v1", item
    assert item["Flags"] == 42, item
    assert item["CreateIndex"] == item["ModifyIndex"], item
    # py-consul hands the index over as the header's text, as it does with Consul
    assert int(index) >= item["ModifyIndex"], (index, item)

    # a missing key: (index, None)
    index, missing = c.kv.get("app/nothing")
    assert missing is None and int(index) > 0, (index, missing)

    # check-and-set: 0 means "only if absent"; otherwise the ModifyIndex must match
    assert c.kv.put("app/config", "v2", cas=0) is False
    assert c.kv.put("app/config", "v2", cas=item["ModifyIndex"] + 1000) is False
    assert c.kv.put("app/config", "v2", cas=item["ModifyIndex"]) is True
    _, item = c.kv.get("app/config")
    assert item["Value"] == b"v2" and item["Flags"] == 0, item
    assert c.kv.put("app/new", "n", cas=0) is True

    # recursive reads and key listings
    for key in ("app/db/host", "app/db/port", "app/web/port", "other"):
        assert c.kv.put(key, key) is True
    _, items = c.kv.get("app/", recurse=True)
    assert [i["Key"] for i in items] == [
        "app/config", "app/db/host", "app/db/port", "app/new", "app/web/port"], items
    _, keys = c.kv.get("app/", keys=True, separator="/")
    assert keys == ["app/config", "app/db/", "app/new", "app/web/"], keys
    _, keys = c.kv.get("", keys=True)
    assert "other" in keys and len(keys) == 6, keys

    # consistency modes, on another member
    for other in others:
        for mode in ("default", "consistent", "stale"):
            _, item = other.kv.get("app/config", consistency=mode)
            assert item["Value"] == b"v2", (mode, item)

    # a blocking query wakes on a change...
    index, _ = c.kv.get("app/config")
    woke = {}

    def block():
        started = time.monotonic()
        woke["index"], woke["item"] = others[0].kv.get("app/config", index=index, wait="20s")
        woke["after"] = time.monotonic() - started

    waiter = threading.Thread(target=block)
    waiter.start()
    time.sleep(0.5)
    assert c.kv.put("app/config", "v3") is True
    waiter.join(30)
    assert woke["item"]["Value"] == b"v3", woke
    assert int(woke["index"]) > int(index), woke
    assert woke["after"] < 10, woke
    # ...ignores changes to other keys, and times out with the same index without one
    index = woke["index"]
    started = time.monotonic()
    c.kv.put("other", "changed")
    same, item = others[0].kv.get("app/config", index=index, wait="1s")
    waited = time.monotonic() - started
    assert waited >= 1.0, waited
    assert item["Value"] == b"v3", item
    # a prefix's blocking query wakes on a change under it
    index, _ = c.kv.get("app/", recurse=True)
    threading.Timer(0.3, lambda: c.kv.put("app/db/host", "moved")).start()
    after, items = c.kv.get("app/", recurse=True, index=index, wait="20s")
    assert int(after) > int(index) and any(i["Value"] == b"moved" for i in items), items

    # deletes, with check-and-set and recursively
    _, item = c.kv.get("app/new")
    assert c.kv.delete("app/new", cas=item["ModifyIndex"] + 1000) is False
    assert c.kv.delete("app/new", cas=item["ModifyIndex"]) is True
    assert c.kv.get("app/new")[1] is None
    assert c.kv.delete("app/", recurse=True) is True
    assert c.kv.get("app/", recurse=True)[1] is None

    # transactions: atomic, conditions checked first, results in order
    def b64(text):
        return base64.b64encode(text.encode()).decode()

    done = c.txn.put([
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("1"), "Flags": 3}},
        {"KV": {"Verb": "check-not-exists", "Key": "txn/b"}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("2")}},
        {"KV": {"Verb": "get-tree", "Key": "txn/"}},
    ])
    assert done["Errors"] is None, done
    results = [r["KV"] for r in done["Results"]]
    assert [r["Key"] for r in results] == ["txn/a", "txn/b", "txn/a", "txn/b"], results
    assert results[0]["Flags"] == 3 and results[0]["Value"] is None, results
    assert results[2]["Value"] == b64("1") and results[3]["Value"] == b64("2"), results
    a = results[2]

    def refusal(ops):
        """The errors of a transaction that must be refused."""
        try:
            c.txn.put(ops)
        except consul.ConsulException as refused:
            text = str(refused)
            assert text.startswith("409"), text
            return json.loads(text[4:])["Errors"]
        raise AssertionError(f"the transaction must be refused: {ops}")

    errors = refusal([
        {"KV": {"Verb": "set", "Key": "txn/c", "Value": b64("3")}},
        {"KV": {"Verb": "cas", "Key": "txn/a", "Value": b64("x"),
                "Index": a["ModifyIndex"] + 100}},
    ])
    assert errors == [{"OpIndex": 1, "What": 'failed to set key "txn/a", index is stale'}], errors
    assert c.kv.get("txn/c")[1] is None, "nothing of a refused transaction is applied"
    done = c.txn.put([
        {"KV": {"Verb": "delete-cas", "Key": "txn/a", "Index": a["ModifyIndex"]}},
        {"KV": {"Verb": "delete", "Key": "txn/b"}},
    ])
    assert done["Results"] == [] and c.kv.get("txn/", recurse=True)[1] is None, done

    # sessions and locks
    s1 = c.session.create(name="worker-1", lock_delay=0, ttl=10)
    s2 = others[0].session.create(name="worker-2", lock_delay=0)
    assert c.kv.put("lock/leader", "w1", acquire=s1) is True
    assert others[0].kv.put("lock/leader", "w2", acquire=s2) is False
    _, item = c.kv.get("lock/leader")
    assert item["Session"] == s1 and item["LockIndex"] == 1, item
    assert c.kv.put("lock/leader", "w2", release=s2) is False
    assert c.kv.put("lock/leader", "w1", release=s1) is True
    _, item = c.kv.get("lock/leader")
    assert "Session" not in item and item["LockIndex"] == 1, item
    assert c.kv.put("lock/leader", "w2", acquire=s2) is True
    _, item = c.kv.get("lock/leader")
    assert item["Session"] == s2 and item["LockIndex"] == 2, item
    _, info = others[1].session.info(s1)
    assert info["Name"] == "worker-1" and info["TTL"] == "10s" and info["Behavior"] == "release", info
    _, sessions = c.session.list()
    assert {s1, s2} <= {s["ID"] for s in sessions}, sessions
    assert c.session.renew(s1)["ID"] == s1
    # a blocking session list wakes when a session is created
    index, _ = others[1].session.list()
    threading.Timer(0.3, lambda: c.session.create(name="wakes", lock_delay=0)).start()
    after, sessions = others[1].session.list(index=index, wait="20s")
    assert int(after) > int(index), (index, after)
    assert "wakes" in {s["Name"] for s in sessions}, sessions
    # destroying a session releases its locks
    assert c.session.destroy(s2) is True
    _, item = c.kv.get("lock/leader")
    assert "Session" not in item, item
    assert c.session.info(s2)[1] is None

    # locks in transactions: a refused lock refuses the whole transaction
    s3 = others[1].session.create(name="worker-3", lock_delay=0)
    done = c.txn.put([
        {"KV": {"Verb": "lock", "Key": "lock/txn", "Value": b64("one"), "Session": s1}},
        {"KV": {"Verb": "set", "Key": "lock/data", "Value": b64("1")}},
    ])
    locked = done["Results"][0]["KV"]
    assert locked["Session"] == s1 and locked["LockIndex"] == 1, done
    assert locked["Value"] is None, done
    errors = refusal([
        {"KV": {"Verb": "set", "Key": "lock/data", "Value": b64("2")}},
        {"KV": {"Verb": "lock", "Key": "lock/txn", "Session": s3}},
    ])
    assert errors == [
        {"OpIndex": 1, "What": 'failed to lock key "lock/txn", lock is already held'}], errors
    errors = refusal([
        {"KV": {"Verb": "unlock", "Key": "lock/txn", "Session": s3}},
    ])
    assert errors == [{"OpIndex": 0, "What": 'failed to unlock key "lock/txn", '
                       "lock isn't held, or is held by another session"}], errors
    errors = refusal([
        {"KV": {"Verb": "check-session", "Key": "lock/txn", "Session": s3}},
        {"KV": {"Verb": "check-session", "Key": "lock/none", "Session": s3}},
    ])
    assert errors == [
        {"OpIndex": 0,
         "What": f'failed session check for key "lock/txn", current session "{s1}" != "{s3}"'},
        {"OpIndex": 1, "What": 'failed to check session, key "lock/none" doesn\'t exist'},
    ], errors
    assert c.kv.get("lock/data")[1]["Value"] == b"1", "nothing of a refused transaction applies"
    done = c.txn.put([
        {"KV": {"Verb": "check-session", "Key": "lock/txn", "Session": s1}},
        {"KV": {"Verb": "unlock", "Key": "lock/txn", "Value": b64("free"), "Session": s1}},
        {"KV": {"Verb": "set", "Key": "lock/data", "Value": b64("3")}},
    ])
    checked, unlocked = done["Results"][0]["KV"], done["Results"][1]["KV"]
    assert checked["Session"] == s1 and "Session" not in unlocked, done
    assert unlocked["LockIndex"] == 1, done
    _, item = others[1].kv.get("lock/txn")
    assert item["Value"] == b"free" and "Session" not in item, item
    done = others[1].txn.put([
        {"KV": {"Verb": "lock", "Key": "lock/txn", "Session": s3}},
    ])
    assert done["Results"][0]["KV"]["LockIndex"] == 2, done
    errors = refusal([{"KV": {"Verb": "lock", "Key": "lock/txn"}}])
    assert errors == [{"OpIndex": 0, "What": "missing session"}], errors

    # a lock handed over when its holder's session expires: the holder stops renewing; the
    # waiter's blocking query wakes when the lock is released, and it takes the lock
    holder = c.session.create(name="holder", lock_delay=0, ttl=10)
    waiter = others[0].session.create(name="waiter", lock_delay=0)
    assert c.kv.put("lock/job", "holder", acquire=holder) is True
    assert others[0].kv.put("lock/job", "waiter", acquire=waiter) is False
    index, item = others[0].kv.get("lock/job")
    started = time.monotonic()
    while item.get("Session") is not None:
        assert time.monotonic() - started < 40, item
        index, item = others[0].kv.get("lock/job", index=index, wait="15s")
    assert others[0].kv.put("lock/job", "waiter", acquire=waiter) is True
    _, item = c.kv.get("lock/job")
    assert item["Session"] == waiter and item["LockIndex"] == 2, item
    assert c.session.info(holder)[1] is None, "the expired session is gone"
    # a session that deletes its keys when it ends
    ephemeral = c.session.create(behavior="delete", lock_delay=0)
    assert c.kv.put("lock/ephemeral", "x", acquire=ephemeral) is True
    c.session.destroy(ephemeral)
    assert c.kv.get("lock/ephemeral")[1] is None

    # status
    leader = c.status.leader()
    peers = c.status.peers()
    assert len(peers) == len(addresses) and leader in peers, (leader, peers)
    print("ok")


main()
