// Child processes for end-to-end tests: the memshift CLI on 127.0.0.1, tracked by PID so that every
// test can end exactly the processes it started, even when it fails.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  proc: ChildProcess;
  /** Resolves when the process exits (never rejects). */
  done: Promise<Finished>;
  stdout(): string;
  stderr(): string;
}

const live = new Set<ChildProcess>();

/** The flags that choose how `source` and `dest` secure their channels (one of them is required). */
const SECURITY_FLAGS = ['--insecure', '--psk-file', '--tls-cert', '--tls-key', '--tls-ca'];

/**
 * `source` and `dest` args as the tests that are not about security run them: plaintext, by explicit
 * choice, unless the args already choose (security tests pass their own flags, or `exact`).
 */
function withSecurity(args: readonly string[]): readonly string[] {
  const command = args[0];
  if (command !== 'source' && command !== 'dest') return args;
  if (args.some((a) => SECURITY_FLAGS.includes(a.split('=')[0]))) return args;
  return [...args, '--insecure'];
}

/**
 * Starts `memshift <args>`; the process is killed by `killAll` if it is still running. `source` and
 * `dest` get --insecure unless `args` choose a security or `exact` is set (args exactly as given).
 */
export function memshift(args: readonly string[], env: NodeJS.ProcessEnv = {}, options: { exact?: boolean; netns?: string } = {}): Running {
  const argv = options.exact === true ? args : withSecurity(args);
  // In a network namespace: `ip netns exec` execs node in place, so the PID is still the node process's.
  const [command, commandArgs] = options.netns === undefined
    ? [process.execPath, [CLI, ...argv]]
    : ['ip', ['netns', 'exec', options.netns, process.execPath, CLI, ...argv]];
  return spawnTracked(command, commandArgs, env);
}

/** Starts any program a test needs (a QEMU, say), tracked like the CLI's processes: `killAll` ends it by PID. */
export function spawnTracked(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Running {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<Finished>((resolve) => {
    proc.on('close', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return { proc, done, stdout: () => out, stderr: () => err };
}

/** Waits until `predicate(stdout + stderr)` holds; rejects if the process exits first or after `timeoutMs`. */
export async function waitForOutput(r: Running, predicate: (text: string) => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void r.done.then(() => { exited = true; });
  while (!predicate(r.stdout() + r.stderr())) {
    if (exited) throw new Error(`process exited before expected output; stderr:\n${r.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for output; stdout:\n${r.stdout()}\nstderr:\n${r.stderr()}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

/**
 * Starts a destination on 127.0.0.1 with a free port; resolves once it listens. Quiet by default (its
 * notices, such as refusals, still print); `quiet: false` keeps routine lines such as "accepted" too.
 */
export async function startDestination(args: readonly string[] = [], options: { quiet?: boolean } = {}, env: NodeJS.ProcessEnv = {}): Promise<Running & { port: number }> {
  const r = memshift(['dest', '--listen', '127.0.0.1:0', ...(options.quiet === false ? [] : ['--quiet']), ...args], env);
  await waitForOutput(r, (t) => /listening on 127\.0\.0\.1:\d+/.test(t));
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(r.stdout())![1]);
  return { ...r, port };
}

/** Kills every process started here that is still running (by PID, SIGKILL) and waits for them. */
export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => new Promise((res) => (p.exitCode !== null || p.signalCode !== null ? res(null) : p.once('close', res)))));
}

process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});
