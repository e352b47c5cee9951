/**
 * Timestamps in a batch: the run's requests share a concurrency limit (--timestamp-jobs), an
 * optional rate limit (--timestamp-rate) and a circuit breaker per URL. Counted by the local TSA
 * (`openssl ts -reply` behind node:http), never timed. Every signature is checked by
 * `openssl cms -verify`, every embedded timestamp by `openssl ts -verify`.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BREAK_AFTER, RequestScheduler, TokenBucket, type Clock } from "../src/core/util/scheduler.js";
import { tryEach } from "../src/core/util/failover.js";
import { runAction } from "./helpers/action.js";
import { codesign } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { opensslTsVerify, startTsa, type Tsa } from "./helpers/tsa.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let ecCert: string;
let files: string[];
let slow: Tsa;

interface Report {
  ok: boolean;
  signed: number;
  failed: number;
  files: {
    input: string;
    output: string;
    ok: boolean;
    timestamp?: { url: string };
    error?: { message: string };
  }[];
  timestampStats?: {
    jobs: number;
    ratePerSecond?: number;
    requests: number;
    failures: number;
    skippedUrls: { url: string; failures: number; lastError: string }[];
  };
}

beforeAll(async () => {
  t = await createTestToken();
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  const dir = path.join(t.dir, "in");
  await mkdir(dir);
  files = [];
  for (let i = 0; i < 40; i++) {
    const f = path.join(dir, `file-${i}.txt`);
    await writeFile(f, `payload ${i}\n`.repeat(i + 1));
    files.push(f);
  }
  slow = await startTsa("good", { delayMs: 50 });
});

afterAll(async () => {
  await slow?.close();
  await t?.cleanup();
});

const sign = (tsas: Tsa[], args: string[]) =>
  codesign(
    [
      "sign",
      "--tool",
      "cms",
      "--key",
      EC,
      "--pin-file",
      t.dev.pinFile,
      "--json",
      ...tsas.flatMap((x) => ["--tsa-ca", x.caFile]),
      ...args,
    ],
    { env: t.env },
  );

/** Every output verified by openssl cms, its timestamp by openssl ts against `tsa`. */
async function verifyAll(report: Report, tsa: Tsa): Promise<void> {
  for (const f of report.files) {
    expect(f.ok, f.error?.message).toBe(true);
    expect(f.timestamp?.url).toBe(tsa.url);
    await opensslCmsVerify(f.output, ecCert, { content: f.input });
    await opensslTsVerify(f.output, tsa);
  }
}

describe("sign: timestamps of a batch", () => {
  it("40 files, a TSA answering in 50 ms, --timestamp-jobs 4: at most 4 at once, more than 1", async () => {
    const out = path.join(t.dir, "out-jobs");
    const before = slow.requests;
    const r = await sign(
      [slow],
      ["--timestamp", slow.url, "--timestamp-jobs", "4", "--out-dir", out, ...files],
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report).toMatchObject({ ok: true, signed: 40, failed: 0 });
    expect(slow.requests - before).toBe(40);
    expect(slow.maxConcurrent).toBeLessThanOrEqual(4);
    expect(slow.maxConcurrent).toBeGreaterThan(1);
    expect(report.timestampStats).toMatchObject({ jobs: 4, requests: 40, failures: 0, skippedUrls: [] });
    expect(report.timestampStats).not.toHaveProperty("ratePerSecond");
    await verifyAll(report, slow);
  });

  it("--timestamp-rate 20 --timestamp-jobs 2: the run uses those limits, every file stamped", async () => {
    const out = path.join(t.dir, "out-rate");
    const before = slow.requests;
    const r = await sign(
      [slow],
      [
        "--timestamp",
        slow.url,
        "--timestamp-rate",
        "20",
        "--timestamp-jobs",
        "2",
        "--out-dir",
        out,
        ...files.slice(0, 6),
      ],
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.timestampStats).toMatchObject({ jobs: 2, ratePerSecond: 20, requests: 6, failures: 0 });
    expect(slow.requests - before).toBe(6);
    await verifyAll(report, slow);
  });

  it("--timestamp-jobs 1: one request at a time", async () => {
    const one = await startTsa("good", { delayMs: 20 });
    try {
      const out = path.join(t.dir, "out-one");
      const r = await sign(
        [one],
        ["--timestamp", one.url, "--timestamp-jobs", "1", "--out-dir", out, ...files.slice(0, 8)],
      );
      expect(r.exitCode, r.stderr).toBe(0);
      expect(one.requests).toBe(8);
      expect(one.maxConcurrent).toBe(1);
      await verifyAll(JSON.parse(r.stdout) as Report, one);
    } finally {
      await one.close();
    }
  });

  it(`a first TSA that never answers: at most ${BREAK_AFTER} requests to it, every file stamped by the second`, async () => {
    const dead = await startTsa("hang");
    const good = await startTsa("good");
    try {
      const out = path.join(t.dir, "out-hang");
      const r = await sign(
        [good],
        [
          "--timestamp",
          dead.url,
          "--timestamp",
          good.url,
          "--timestamp-timeout",
          "1",
          "--out-dir",
          out,
          ...files.slice(0, 20),
        ],
      );
      expect(r.exitCode, r.stderr).toBe(0);
      expect(dead.requests).toBeGreaterThanOrEqual(1);
      expect(dead.requests).toBeLessThanOrEqual(BREAK_AFTER);
      expect(good.requests).toBe(20);
      const report = JSON.parse(r.stdout) as Report;
      expect(report.signed).toBe(20);
      await verifyAll(report, good);
    } finally {
      await dead.close();
      await good.close();
    }
  });

  it(`a first TSA answering HTTP 500: passed over once the second answers (at most ${BREAK_AFTER} requests)`, async () => {
    const broken = await startTsa("http500");
    const good = await startTsa("good");
    try {
      const out = path.join(t.dir, "out-500");
      const r = await sign(
        [good],
        [
          "--timestamp",
          broken.url,
          "--timestamp",
          good.url,
          "--timestamp-retries",
          "0",
          "--out-dir",
          out,
          ...files,
        ],
      );
      expect(r.exitCode, r.stderr).toBe(0);
      expect(broken.requests).toBeGreaterThanOrEqual(1);
      expect(broken.requests).toBeLessThanOrEqual(BREAK_AFTER);
      expect(good.requests).toBe(40);
      const report = JSON.parse(r.stdout) as Report;
      expect(report.timestampStats).toMatchObject({
        requests: 40 + broken.requests,
        failures: broken.requests,
      });
      await verifyAll(report, good);
    } finally {
      await broken.close();
      await good.close();
    }
  });

  it("every TSA failing: each file fails naming every URL and its last error; no output", async () => {
    const a = await startTsa("http500");
    const b = await startTsa("rejection");
    try {
      const out = path.join(t.dir, "out-none");
      const r = await sign(
        [a, b],
        [
          "--timestamp",
          a.url,
          "--timestamp",
          b.url,
          "--timestamp-retries",
          "0",
          "--out-dir",
          out,
          ...files.slice(0, 10),
        ],
      );
      expect(r.exitCode, r.stderr).toBe(5);
      expect(a.requests).toBe(BREAK_AFTER);
      expect(b.requests).toBe(BREAK_AFTER);
      const report = JSON.parse(r.stdout) as Report;
      expect(report.failed).toBe(10);
      const last = report.files.at(-1)?.error?.message ?? "";
      expect(last).toContain(`${a.url}: skipped`);
      expect(last).toContain("HTTP 500");
      expect(last).toContain(`${b.url}: skipped`);
      expect(last).toContain("refused: PKI status 2");
      expect(existsSync(out) ? await readdir(out) : []).toEqual([]);
      for (const x of [a, b])
        expect(r.stderr).toContain(
          `timestamp server ${x.url} failed ${BREAK_AFTER} times in a row (${x === a ? "HTTP 500" : "the server refused"}`,
        );
      expect(r.stderr).toContain("skipped for the rest of this run");
      expect(report.timestampStats?.skippedUrls.map((x) => x.url).sort()).toEqual([a.url, b.url].sort());
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("the benchmark's in-process TSA gives answers openssl ts -verify accepts", async () => {
    const quick = await startTsa("good", { inProcess: true });
    try {
      const out = path.join(t.dir, "out-inprocess");
      const r = await sign([quick], ["--timestamp", quick.url, "--out-dir", out, ...files.slice(0, 3)]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(quick.requests).toBe(3);
      await verifyAll(JSON.parse(r.stdout) as Report, quick);
    } finally {
      await quick.close();
    }
  });

  for (const [flag, value, words] of [
    ["--timestamp-jobs", "0", "--timestamp-jobs must be a whole number ≥ 1 (given: 0)"],
    ["--timestamp-jobs", "2.5", "--timestamp-jobs must be a whole number ≥ 1 (given: 2.5)"],
    ["--timestamp-jobs", "many", "--timestamp-jobs must be a whole number ≥ 1 (given: not a number)"],
    ["--timestamp-rate", "0", "--timestamp-rate must be a number > 0 (given: 0)"],
    ["--timestamp-rate", "-3", "--timestamp-rate must be a number > 0 (given: -3)"],
  ] as const) {
    it(`${flag} ${value}: exit 2 naming the flag, before any request`, async () => {
      const before = slow.requests;
      const r = await sign(
        [slow],
        ["--timestamp", slow.url, flag, value, "--out-dir", path.join(t.dir, "bad"), files[0] as string],
      );
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain(words);
      expect(slow.requests).toBe(before);
    });
  }

  for (const [input, value, words] of [
    ["timestamp-jobs", "0", 'timestamp-jobs: "0" is not a whole number ≥ 1'],
    ["timestamp-rate", "fast", 'timestamp-rate: "fast" is not a number > 0'],
  ] as const) {
    it(`the Action's ${input} "${value}": the error names the input, not a flag`, async () => {
      const ws = path.join(t.dir, `ws-${input}`);
      await mkdir(ws, { recursive: true });
      await writeFile(path.join(ws, "app.bin"), "the app\n");
      const before = slow.requests;
      const r = await runAction(
        ws,
        {
          key: EC,
          pin: t.pin,
          module: t.module,
          tool: "cms",
          files: "app.bin",
          "timestamp-url": slow.url,
          [input]: value,
        },
        t.env,
      );
      expect(r.exitCode).toBe(1);
      expect(r.log).toContain(`::error::${words}`);
      expect(r.log).not.toContain("--timestamp");
      expect(slow.requests).toBe(before);
    });
  }
});

/** A clock that moves only when told: sleeps resolve as time passes them. */
function manualClock(): Clock & { advance(ms: number): Promise<void> } {
  let now = 0;
  const sleepers: { until: number; wake: () => void }[] = [];
  return {
    now: () => now,
    sleep: (ms) => new Promise<void>((wake) => sleepers.push({ until: now + ms, wake })),
    async advance(ms) {
      now += ms;
      for (const s of sleepers.filter((x) => x.until <= now)) {
        sleepers.splice(sleepers.indexOf(s), 1);
        s.wake();
      }
      await new Promise((r) => setImmediate(r));
    },
  };
}

describe("the scheduler's parts", () => {
  it("the token bucket spaces starts 1/rate apart (an injected clock)", async () => {
    const clock = manualClock();
    const bucket = new TokenBucket(4, 1, clock); // 4 a second: 250 ms apart
    const started: number[] = [];
    const all = Promise.all(
      Array.from({ length: 5 }, () => bucket.take().then(() => started.push(clock.now()))),
    );
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 10; i++) await clock.advance(125);
    await all;
    expect(started).toEqual([0, 250, 500, 750, 1000]);
  });

  it("a burst of 3 goes at once, then the rate holds", async () => {
    const clock = manualClock();
    const bucket = new TokenBucket(2, 3, clock); // 500 ms apart after three
    const started: number[] = [];
    const all = Promise.all(
      Array.from({ length: 5 }, () => bucket.take().then(() => started.push(clock.now()))),
    );
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 8; i++) await clock.advance(250);
    await all;
    expect(started).toEqual([0, 0, 0, 500, 1000]);
  });

  it("--timestamp-rate: the scheduler's attempts start on the bucket's beat", async () => {
    const clock = manualClock();
    const s = new RequestScheduler({ jobs: 8, ratePerSecond: 10, clock });
    const started: number[] = [];
    const calls = Array.from({ length: 4 }, () =>
      tryEach(["http://a.test/"], async () => started.push(clock.now()), { scheduler: s }),
    );
    await new Promise((r) => setImmediate(r)); // every call has reserved its start
    for (let i = 0; i < 10; i++) await clock.advance(50);
    await Promise.all(calls);
    expect(started).toEqual([0, 100, 200, 300]);
  });

  it("an unproven or failing URL takes one request at a time; the others go to the next URL", async () => {
    const s = new RequestScheduler({ jobs: 8 });
    const seen: string[] = [];
    let release: () => void = () => undefined;
    const firstBlocked = new Promise<void>((r) => (release = r));
    const attempt = async (url: string) => {
      seen.push(url);
      if (url === "http://a.test/") {
        await firstBlocked;
        throw new Error("HTTP 503");
      }
      return url;
    };
    const runs = Array.from({ length: 6 }, () =>
      tryEach(["http://a.test/", "http://b.test/"], attempt, { scheduler: s, retries: 0 }),
    );
    await new Promise((r) => setImmediate(r));
    release();
    const results = await Promise.all(runs);
    expect(results.every((r) => r.url === "http://b.test/")).toBe(true);
    expect(seen.filter((u) => u === "http://a.test/")).toHaveLength(1);
    expect(s.stats()).toMatchObject({ requests: 7, failures: 1 });
  });

  it("a URL that failed is passed over while a later one answers; with none, it is probed again", async () => {
    const s = new RequestScheduler({ jobs: 8 });
    const seen: string[] = [];
    let aUp = false;
    let bUp = true;
    const attempt = async (url: string) => {
      seen.push(url);
      if (url === "http://a.test/" ? !aUp : !bUp) throw new Error("HTTP 503");
      return url;
    };
    const urls = ["http://a.test/", "http://b.test/"];
    const one = () => tryEach(urls, attempt, { scheduler: s, retries: 0 });
    expect((await one()).url).toBe("http://b.test/"); // a fails, b answers
    aUp = true; // a is back, but b answers: a is not asked
    for (let i = 0; i < 5; i++) expect((await one()).url).toBe("http://b.test/");
    expect(seen.filter((u) => u === "http://a.test/")).toHaveLength(1);
    bUp = false; // b fails: this request goes back to a, which answers
    expect((await one()).url).toBe("http://a.test/");
    expect((await one()).url).toBe("http://a.test/");
    expect(s.stats().skippedUrls).toEqual([]);
  });

  it(`${BREAK_AFTER} failures in a row open a URL: skipped for the rest of the run, even alone`, async () => {
    const s = new RequestScheduler({ jobs: 2 });
    let calls = 0;
    const attempt = async () => {
      calls++;
      throw new Error("HTTP 500");
    };
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => tryEach(["http://a.test/"], attempt, { scheduler: s, retries: 0 })),
    );
    expect(calls).toBe(BREAK_AFTER);
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    const last = results.at(-1) as PromiseRejectedResult;
    expect((last.reason as Error).message).toMatch(
      /http:\/\/a\.test\/: skipped: failed 3 times, 3 in a row.*HTTP 500/,
    );
    expect(s.stats().skippedUrls).toEqual([{ url: "http://a.test/", failures: 3, lastError: "HTTP 500" }]);
  });

  it("bad limits from the library are usage errors", () => {
    expect(() => new RequestScheduler({ jobs: 0 })).toThrow(/whole number ≥ 1/);
    expect(() => new RequestScheduler({ ratePerSecond: Number.NaN })).toThrow(/must be a number > 0/);
  });
});
