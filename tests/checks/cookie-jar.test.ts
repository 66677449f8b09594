import { describe, expect, it } from 'vitest';
import { CookieJar, parseSetCookie } from '../../deployer/checks/cookie-jar.ts';

describe('parseSetCookie', () => {
  it('reads name, value and HttpOnly, ignoring scoping attributes', () => {
    expect(parseSetCookie('sid=abc.def; Path=/; HttpOnly; SameSite=Lax')).toEqual({
      cookie: { name: 'sid', value: 'abc.def', httpOnly: true },
      expired: false,
    });
    expect(parseSetCookie('lb="instance-1"; Domain=example.org')).toEqual({
      cookie: { name: 'lb', value: 'instance-1', httpOnly: false },
      expired: false,
    });
    // Values may contain "=" (base64, signatures).
    expect(parseSetCookie('t=a=b==; Secure')?.cookie.value).toBe('a=b==');
  });

  it('treats Max-Age<=0 and past Expires as a deletion', () => {
    expect(parseSetCookie('sid=; Max-Age=0')?.expired).toBe(true);
    expect(parseSetCookie('sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT')?.expired).toBe(true);
    expect(parseSetCookie('sid=x; Max-Age=3600')?.expired).toBe(false);
  });

  it('rejects lines without a name', () => {
    expect(parseSetCookie('=x')).toBeUndefined();
    expect(parseSetCookie('garbage')).toBeUndefined();
  });
});

describe('CookieJar', () => {
  it('keeps, replaces, deletes and sends cookies like a browser on one origin', () => {
    const jar = new CookieJar();
    expect(jar.header()).toBeUndefined();
    expect(jar.store(['lb=1; HttpOnly', 'sid=a; HttpOnly'])).toEqual(['lb', 'sid']);
    expect(jar.store('sid=b; HttpOnly')).toEqual(['sid']);
    expect(jar.header()).toBe('lb=1; sid=b');
    jar.store('lb=; Max-Age=0');
    expect(jar.header()).toBe('sid=b');
    jar.set('session_id', 'forged');
    expect(jar.get('session_id')).toEqual({ name: 'session_id', value: 'forged', httpOnly: false });
    const copy = jar.filter((c) => c.name !== 'sid');
    expect(copy.header()).toBe('session_id=forged');
    expect(jar.header()).toBe('sid=b; session_id=forged');
  });
});
