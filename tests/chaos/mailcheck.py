"""What the chaos scripts check of examples/mailbox: the letters the
receiver stored (its SQLite database, read-only while it runs), the sender's
outbox, and the sender's closing report."""
import os
import sqlite3
import subprocess

from procs import Fail


def letters(db, sender):
    """(seq list in storage order, total) from the receiver's database; ([], 0)
    before it exists, ([], -1) while it cannot be read (e.g. not created yet)."""
    if not os.path.exists(db):
        return [], 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            seqs = [r[0] for r in con.execute(
                "SELECT seq FROM letters WHERE sender = ? ORDER BY id", (sender,))]
            total = con.execute("SELECT count(*) FROM letters").fetchone()[0]
            return seqs, total
        finally:
            con.close()
    except sqlite3.Error:
        return [], -1


def check_letters(db, sender, first, last, only=False):
    """Fail unless the receiver holds SENDER's letters FIRST..LAST, each once,
    in order (and, when ONLY, no letter from anyone else)."""
    seqs, total = letters(db, sender)
    want = list(range(first, last + 1))
    if seqs != want or (only and total != len(want)):
        dup = len(seqs) - len(set(seqs))
        missing = len(set(want) - set(seqs))
        disorder = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
        raise Fail(f"the receiver holds {total} letters, {len(seqs)} from {sender}, "
                   f"want {first}..{last}: {dup} duplicate(s), {missing} missing, "
                   f"{disorder} out of order")


def wait_letters(run, db, sender, want, why, within=15):
    """Waits until SENDER's letters in the receiver are exactly the seq list
    WANT; Fail (saying WHY they should be) after WITHIN seconds."""
    if not run.wait_for(lambda: letters(db, sender)[0] == want,
                        f"{sender} letters {want}", within, every=0.05):
        raise Fail(f"{sender} letters: {letters(db, sender)[0]}, want {want} ({why})")


def wait_stored(run, db, sender, at, sender_proc, what):
    """Waits, as long as the run's time lasts, until the receiver holds AT
    letters from SENDER, to then do WHAT; Fail when the sender process
    exits first."""
    def reached():
        if sender_proc.poll() is not None:
            raise Fail(f"the sender exited ({sender_proc.returncode}) with "
                       f"{len(letters(db, sender)[0])} letters stored, before "
                       f"{at} to {what}")
        return len(letters(db, sender)[0]) >= at

    run.wait_for(reached, f"{at} letters to {what}", within=None, every=0.01)


def check_outbox(odb):
    """Fail unless the sender's outbox is empty: nothing pending, no dead letter."""
    con = sqlite3.connect(odb)
    pending = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
    dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    con.close()
    if pending or dead:
        raise Fail(f"the outbox still holds {pending} pending, {dead} dead")


def finish_sender(run, p, log, n):
    """Waits (within the run's time) for the sender P to finish; Fail unless it
    exits 0 having reported all N letters acknowledged and its outbox empty."""
    try:
        rc = p.wait(timeout=max(run.left(), 1))
    except subprocess.TimeoutExpired:
        raise Fail(f"the sender did not finish within {run.budget} s overall")
    with open(log) as f:
        text = f.read()
    if rc != 0:
        raise Fail(f"the sender exited with {rc}:\n{text[-3000:]}")
    if f"{n} of {n} letters acknowledged (outbox: 0 pending, 0 dead)" not in text:
        raise Fail("the sender did not report an empty outbox")
