"""The fuzz supervisor's rules (fuzz_unet_inputs.py), checked with a stand-in runner instead of UNetFuzzCaseRunner.

Each case file holds what the stand-in does with it: "ran", "raise", "crash", "crash alone" (crashes when it is the
first case its process runs, and runs otherwise: an upstream fault whose outcome depends on what the heap holds),
"hang unless alone", "die after result" (runs, and the runner dies before the next case: a corrupted heap failing at
the next free), "corrupt" (runs, and the runner dies once its cases are done) or "crash if corrupted" (crashes where a
"corrupt" case ran before it in its process)."""
import os
import sys
import tempfile
import textwrap
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_unet_inputs  # noqa: E402

STAND_IN_RUNNER = textwrap.dedent("""\
    import os, signal, sys, time
    kind, case_list, first = sys.argv[1:4]
    paths = open(case_list).read().split()
    corrupted = False
    for i in range(int(first), len(paths)):
        action = open(paths[i]).read().strip()
        print("BEGIN %d" % i, flush=True)
        print("STAGE %d loaded" % i, flush=True)
        alone = i == int(first)
        if action == "crash" or (action == "crash alone" and alone) or (action == "crash if corrupted" and corrupted):
            os.kill(os.getpid(), signal.SIGSEGV)
        if action == "hang unless alone" and not alone:
            time.sleep(60)
        corrupted = corrupted or action == "corrupt"
        if action == "raise":
            print("ITK %d ITK ERROR: a message" % i, flush=True)
        else:
            print("RAN %d " % i, flush=True)
        if action == "die after result":
            os.kill(os.getpid(), signal.SIGABRT)
    if corrupted:
        os.kill(os.getpid(), signal.SIGABRT)
    """)


class FuzzSupervisorTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.TemporaryDirectory()
        runner = os.path.join(self.work.name, "runner.py")
        with open(runner, "w") as f:
            f.write("#!%s\n%s" % (sys.executable, STAND_IN_RUNNER))
        os.chmod(runner, 0o755)
        self.command = [runner, "models"]

    def tearDown(self):
        self.work.cleanup()

    def tally(self, actions, known):
        """Runs cases 0, 1, ... (one per action) as the fuzz test does, and tallies them."""
        cases = []
        for index, action in enumerate(actions):
            path = os.path.join(self.work.name, "case-%d" % index)
            with open(path, "w") as f:
                f.write(action)
            cases.append(fuzz_unet_inputs.Case(index, path, "kind", action))
        results = fuzz_unet_inputs.run_shard(self.command, cases, self.work.name, 5, set(known))
        args = types.SimpleNamespace(kind="models", work=self.work.name, timeout=5, known="known.txt")
        known = {("models", index): entry for index, entry in known.items()}
        return fuzz_unet_inputs.tally_results(args, self.command, cases, results, known)

    def test_listed_case_runs_alone_and_fails_as_listed_there_as_upstream(self):
        tally = self.tally(["ran", "crash alone"], {1: ("CRASH", "loaded", "heap-dependent")})
        self.assertEqual([(u[0], u[3]) for u in tally.upstream], [(1, "CRASH")])
        self.assertEqual(tally.failures, [])

    def test_listed_case_corrupts_no_other_case(self):
        tally = self.tally(["ran", "corrupt", "crash if corrupted", "ran"], {1: ("CRASH", "loaded", "corrupts")})
        self.assertEqual([(u[0], u[3]) for u in tally.upstream], [(1, "CRASH")])
        self.assertEqual(tally.per_kind["kind"]["RAN"], 3)
        self.assertEqual(tally.failures, [])

    def test_runner_dying_after_a_result_is_a_crash_of_that_case_and_the_cases_after_it_still_run(self):
        tally = self.tally(["ran", "die after result", "raise"], {})
        self.assertEqual([(f[0], f[3], f[4]) for f in tally.failures], [(1, "CRASH", "loaded")])
        self.assertIn("after its result (RAN): signal SIGABRT", tally.failures[0][5])
        self.assertEqual((tally.per_kind["kind"]["RAN"], tally.per_kind["kind"]["ITK"]), (1, 1))

    def test_runner_dying_at_its_exit_is_a_crash_of_the_case_that_reported_last(self):
        tally = self.tally(["ran", "corrupt"], {})
        self.assertEqual([(f[0], f[3]) for f in tally.failures], [(1, "CRASH")])
        self.assertEqual(tally.per_kind["kind"]["RAN"], 1)

    def test_listed_case_that_no_longer_fails_alone_either_is_stale(self):
        tally = self.tally(["ran", "ran"], {1: ("CRASH", "loaded", "fixed upstream")})
        self.assertEqual([(f[0], f[3]) for f in tally.failures], [(1, "STALE")])
        self.assertEqual(tally.upstream, [])

    def test_listed_case_that_fails_otherwise_alone_is_stale(self):
        tally = self.tally(["ran", "raise"], {1: ("CRASH", "loaded", "now raises")})
        self.assertEqual([(f[0], f[3]) for f in tally.failures], [(1, "STALE")])

    def test_unlisted_crash_fails_even_if_it_runs_alone(self):
        tally = self.tally(["ran", "crash", "ran"], {})
        self.assertEqual([(f[0], f[3]) for f in tally.failures], [(1, "CRASH")])
        self.assertEqual(tally.per_kind["kind"]["RAN"], 2)

    def test_listed_crash_counts_as_upstream_and_the_cases_after_it_still_run(self):
        tally = self.tally(["crash", "raise"], {0: ("CRASH", "loaded", "known")})
        self.assertEqual([(u[0], u[3]) for u in tally.upstream], [(0, "CRASH")])
        self.assertEqual(tally.per_kind["kind"]["ITK"], 1)
        self.assertEqual(tally.failures, [])

    def test_hang_that_ends_alone_counts_as_it_ended_alone(self):
        tally = self.tally(["ran", "hang unless alone"], {})
        self.assertEqual(tally.failures, [])
        self.assertEqual(tally.per_kind["kind"]["RAN"], 2)


if __name__ == "__main__":
    unittest.main()
