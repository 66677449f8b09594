/**
 * The stability window after an instance's gates (issue 13, "the app crash-looping after
 * activation"): a release that starts, answers its health check once and then dies passes the
 * health and version gates. Before the instance is enabled, it must stay healthy, with the same
 * process answering, for `deploy.stability_window_ms`.
 */
import { GateFailedError } from '../../config/errors.ts';
import type { InstanceOps } from '../fleet/instance.ts';
import type { VersionInfo } from '../fleet/service-env.ts';

/** Poll interval of the window's health checks, ms. */
const POLL_MS = 200;

/**
 * Watch an instance for `windowMs` after its gates passed: its health path must answer 200 at
 * every poll (every 200 ms), and at the end /version must come from the process the gates saw
 * (same pid and start time), so one that died and was restarted by a supervisor is caught too.
 * Returns at once when `windowMs` is 0 or `signal` is aborted (the rollout then stops anyway).
 * @param gated what /version said when the gates passed.
 * @throws GateFailedError naming the instance, what failed and after how many ms of the window.
 */
export async function waitStable(o: InstanceOps, gated: VersionInfo, windowMs: number, signal?: AbortSignal): Promise<void> {
  if (windowMs <= 0) return;
  const start = Date.now();
  const end = start + windowMs;
  for (;;) {
    if (signal?.aborted) return;
    if (!(await o.isHealthy())) {
      throw new GateFailedError(
        o.name,
        `stability window: health check ${o.instance.url}${o.inventory.app.health_path} failed ${Date.now() - start} ms after the gates passed (deploy.stability_window_ms ${windowMs}); the app may be crash-looping (see its log)`,
      );
    }
    const left = end - Date.now();
    if (left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, left)));
  }
  const now = await o.readVersion();
  if (!now || now.pid !== gated.pid || now.started_at !== gated.started_at) {
    throw new GateFailedError(
      o.name,
      `stability window: the process that passed the gates (pid ${String(gated.pid)}) ${now ? `was replaced by pid ${String(now.pid)}` : 'no longer answers /version'} within ${windowMs} ms (deploy.stability_window_ms); the app may be crash-looping (see its log)`,
    );
  }
}
