// proto/errors.ts defines gRPC's status codes without importing grpc-js, so the core can name a fault while
// only the wire layer loads gRPC. The wire passes a ProtocolError's code through unchanged, so the two tables
// must agree exactly: every name, every value, nothing extra.
import * as grpc from '@grpc/grpc-js';
import { ProtocolError, status } from '../proto/errors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('proto/errors', () => {
  it('status is grpc-js status, name for name and value for value', () => {
    const theirs = Object.fromEntries(Object.entries(grpc.status).filter(([k]) => Number.isNaN(Number(k))));
    expect({ ...status }).to.deep.equal(theirs);
  });

  it('a ProtocolError carries its code and message unchanged', () => {
    const e = new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer');
    expect(e).to.be.instanceOf(Error);
    expect(e.name).to.equal('ProtocolError');
    expect(e.code).to.equal(grpc.status.DATA_LOSS);
    expect(e.message).to.equal('stream ended without its trailer');
  });
});
