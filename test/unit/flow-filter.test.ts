/** The one flow filter (src/output/flow-filter.ts): words as users write them, lists, and the bugs it replaced. */
import { describe, expect, it } from 'vitest';
import { eventMatches, filterFromQuery, filterFromWords, flowMatches, parseVerdictWord } from '../../src/output/flow-filter.js';
import { masqueradeFlow, publishedFlow } from './serve-helpers.js';

describe('flow filter from words', () => {
  it('verdicts as printed (ACCEPTED, DROPPED, REJECTED) or as filter words; anything else is refused', () => {
    expect(['ACCEPTED', 'DROPPED', 'REJECTED', 'indeterminate', 'Drop'].map(parseVerdictWord)).toEqual([
      'accept',
      'drop',
      'reject',
      'indeterminate',
      'drop',
    ]);
    expect(() => parseVerdictWord('DROPPD')).toThrow(/DROPPD/);
  });

  it('repeated and comma-separated values are one list; proto and nat are the CLI spellings of protocol and natOnly', () => {
    expect(filterFromWords({ port: ['80,8000', '443'], proto: ['TCP'], nat: ['true'], container: ['web'] })).toEqual({
      port: [80, 8000, 443],
      protocol: ['tcp'],
      natOnly: true,
      container: ['web'],
    });
    expect(() => filterFromWords({ port: ['65536'] })).toThrow(/not a port/);
    expect(() => filterFromWords({ protocol: ['gre'] })).toThrow(/gre/);
    expect(() => filterFromWords({ colour: ['red'] })).toThrow(/unknown filter "colour"/);
  });

  it('a URL query: the token is not a filter; no filter key and no subscribe means no subscription', () => {
    expect(filterFromQuery(new URLSearchParams('token=abc'))).toBeNull();
    expect(filterFromQuery(new URLSearchParams('subscribe'))).toEqual({});
    expect(filterFromQuery(new URLSearchParams('container=web&types=flow.start,flow.end&token=x'))).toEqual({
      container: ['web'],
      types: ['flow.start', 'flow.end'],
    });
  });

  it('one value or several: any of a list holds (OR), every criterion must hold (AND)', () => {
    const web = publishedFlow('p0', 40000);
    const masq = masqueradeFlow('m0', 50000);
    expect(flowMatches({ port: [8080, 8000] }, web)).toBe(true);
    expect(flowMatches({ port: 8080 }, web)).toBe(false);
    expect(flowMatches({ container: ['api', 'web'], protocol: 'tcp' }, web)).toBe(true);
    expect(flowMatches({ container: ['api', 'web'], protocol: ['udp'] }, web)).toBe(false);
    expect(flowMatches({ addr: [masq.orig.src] }, masq)).toBe(true);
    expect(flowMatches({ addr: ['192.0.2.1'] }, masq)).toBe(false);
    // a flow the kernel dropped (eBPF) is a dropped flow, whatever the simulator said
    expect(flowMatches({ verdict: 'drop' }, { ...web, drops: [{ timeUs: 1, reason: 'NETFILTER_DROP', iface: 'eth0', tuple: web.orig }] })).toBe(true);
    const notice = { v: 1 as const, seq: 1, time: 1, type: 'notice' as const, message: 'x' };
    expect(eventMatches({ container: 'nobody' }, notice)).toBe(true);
    expect(eventMatches({ types: ['flow.start'] }, notice)).toBe(false);
  });
});
