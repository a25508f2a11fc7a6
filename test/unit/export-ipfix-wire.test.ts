/**
 * IPFIX encoding (RFC 7011) byte by byte: message header, template records with enterprise
 * elements, variable-length strings (short and long form), addresses; and the export URL checks.
 * What a real collector makes of it is tested in test/lab/export-ipfix.test.ts (nfcapd/nfdump).
 */
import { describe, expect, it } from 'vitest';
import {
  encodeMessage,
  encodeSet,
  encodeTemplateRecord,
  ip6Bytes,
  writeDataRecord,
  dataRecordLength,
  type Template,
} from '../../src/export/ipfix-wire.js';
import { ipfixOptionsFrom } from '../../src/export/ipfix.js';
import { parseExportUrl } from '../../src/export/registry.js';
import { parseNatsUrl, subjectToken } from '../../src/export/nats-connect.js';

const T: Template = {
  id: 300,
  fields: [
    { name: 'src', id: 8, kind: 'ip4' },
    { name: 'n', id: 2, kind: 'u64' },
    { name: 'rev', id: 2, kind: 'u64', pen: 29305 },
    { name: 's', id: 7, kind: 'string', pen: 32473 },
  ],
};

describe('IPFIX wire encoding', () => {
  it('template record: ids, lengths, the enterprise bit and number, 65535 for variable length', () => {
    const b = encodeTemplateRecord(T);
    expect(b.toString('hex')).toBe(['012c0004', '00080004', '00020008', '800200080000727' + '9', '8007ffff00007ed9'].join(''));
  });
  it('data record: address, counters, a short and a long string', () => {
    const short = { src: '10.0.10.5', n: 6, rev: 2n ** 40n, s: 'web' };
    const b = Buffer.alloc(dataRecordLength(T, short));
    expect(writeDataRecord(b, 0, T, short)).toBe(b.length);
    expect(b.toString('hex')).toBe(`0a000a05${'0000000000000006'}${'0000010000000000'}03${Buffer.from('web').toString('hex')}`);
    const long = { ...short, s: 'x'.repeat(300) };
    const l = Buffer.alloc(dataRecordLength(T, long));
    writeDataRecord(l, 0, T, long);
    expect(l.subarray(20, 23).toString('hex')).toBe('ff012c');
    expect(l.length).toBe(20 + 3 + 300);
  });
  it('message and set headers: version 10, lengths, export time, sequence, domain', () => {
    const set = encodeSet(2, [encodeTemplateRecord(T)]);
    expect(set.readUInt16BE(0)).toBe(2);
    expect(set.readUInt16BE(2)).toBe(set.length);
    const m = encodeMessage([set], 1_700_000_000, 42, 7);
    expect(m.readUInt16BE(0)).toBe(10);
    expect(m.readUInt16BE(2)).toBe(m.length);
    expect(m.readUInt32BE(4)).toBe(1_700_000_000);
    expect(m.readUInt32BE(8)).toBe(42);
    expect(m.readUInt32BE(12)).toBe(7);
  });
  it('IPv6 addresses, compressed and with an IPv4 tail; zeros for what is not one', () => {
    expect(ip6Bytes('fd00:10::1').toString('hex')).toBe('fd000010000000000000000000000001');
    expect(ip6Bytes('::ffff:10.0.10.5').toString('hex')).toBe('00000000000000000000ffff0a000a05');
    expect(ip6Bytes('::').toString('hex')).toBe('0'.repeat(32));
    expect(ip6Bytes('2001:db8:ff::10').toString('hex')).toBe('20010db800ff00000000000000000010');
    expect(ip6Bytes('not an address').toString('hex')).toBe('0'.repeat(32));
  });
});

describe('export URLs', () => {
  const ctx = { host: 'h1', env: {} };
  it('ipfix: defaults and parameters; bad ones are E_USAGE', () => {
    const o = ipfixOptionsFrom(new URL('ipfix://collector'), ctx);
    expect(o).toMatchObject({ host: 'collector', port: 4739, transport: 'udp', activeS: 60, templateRefreshS: 600, maxMessageBytes: 1400 });
    expect(ipfixOptionsFrom(new URL('ipfix://[::1]:9995?transport=tcp&active=5'), ctx)).toMatchObject({
      host: '::1',
      port: 9995,
      transport: 'tcp',
      activeS: 5,
    });
    expect(() => ipfixOptionsFrom(new URL('ipfix://c?transport=sctp'), ctx)).toThrow(/transport is udp, tcp, tls/);
    expect(() => ipfixOptionsFrom(new URL('ipfix://c?active=0'), ctx)).toThrow(/active/);
    expect(() => ipfixOptionsFrom(new URL('ipfix://c?bogus=1'), ctx)).toThrow(/unknown parameter "bogus"/);
    expect(() => ipfixOptionsFrom(new URL('ipfix://u:p@c'), ctx)).toThrow(/no credentials/);
  });
  it('the registry knows ipfix and nats, and nothing else', () => {
    expect(parseExportUrl('ipfix://c:4739').scheme).toBe('ipfix');
    expect(parseExportUrl('nats://s/journey').scheme).toBe('nats');
    expect(() => parseExportUrl('kafka://b/t')).toThrow(/unknown scheme "kafka" \(known: ipfix, nats\)/);
    expect(() => parseExportUrl('not a url')).toThrow(/not a URL/);
  });
  it('nats: prefix from the path, stream name, no credentials on the command line', () => {
    expect(parseNatsUrl(new URL('nats://127.0.0.1:4222/fleet/dc1'), [])).toMatchObject({
      server: '127.0.0.1:4222',
      prefix: 'fleet.dc1',
      stream: 'FLEET_DC1',
      jetstream: true,
    });
    expect(parseNatsUrl(new URL('nats://s'), [])).toMatchObject({ server: 's:4222', prefix: 'journey', stream: 'JOURNEY' });
    expect(() => parseNatsUrl(new URL('nats://user:secret@s/j'), [])).toThrow(/no credentials in the URL/);
    expect(() => parseNatsUrl(new URL('nats://s/a*b'), [])).toThrow(/subject prefix/);
    expect(subjectToken('web-1.example.com')).toBe('web-1_example_com');
  });
});
