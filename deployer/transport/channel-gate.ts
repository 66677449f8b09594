/**
 * How many channels (commands, SFTP sessions) one SSH connection has open at once. sshd refuses
 * channel opens beyond its `MaxSessions` (default 10, sshd_config(5)), which the client cannot
 * ask for: the gate starts at a ceiling and, the first time the server refuses an open while
 * other channels of ours are open, lowers its limit to what the server took, so later work waits
 * in line instead of failing. One gate per connection (a new connection starts at the ceiling).
 */

/** A FIFO semaphore whose limit only goes down, for the channels of one SSH connection. */
export class ChannelGate {
  private active = 0;
  private max: number;
  private readonly waiting: (() => void)[] = [];

  /** @param ceiling channels at most open at once before the server said anything (>= 1). */
  constructor(ceiling: number) {
    this.max = Math.max(1, Math.floor(ceiling));
  }

  /** The current limit (channels at once). */
  get limit(): number {
    return this.max;
  }

  /** Channels counted as open now (slots held). */
  get open(): number {
    return this.active;
  }

  /**
   * Wait for a slot (first come, first served). @returns the function that gives it back
   * (idempotent): call it once the channel is closed, or when opening it failed.
   */
  async acquire(): Promise<() => void> {
    if (this.active < this.max && this.waiting.length === 0) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.wake();
    };
  }

  /**
   * The server refused a channel open made while holding a slot. When other slots are held, the
   * server's limit is what those use: the gate lowers its limit to that and @returns true (give
   * the slot back and acquire again: the open waits for one of them to close). @returns false when
   * this was the only channel (the refusal is not about our count; retry later or fail).
   */
  refused(): boolean {
    const others = this.active - 1;
    if (others < 1) return false;
    this.max = Math.min(this.max, others);
    return true;
  }

  private wake(): void {
    while (this.active < this.max && this.waiting.length > 0) {
      this.active++;
      this.waiting.shift()!();
    }
  }
}
