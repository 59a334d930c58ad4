/**
 * A gRPC service for tests, with @grpc/grpc-js on both ends and no .proto: messages are raw
 * bytes (UTF-8 text here), so each call kind can be checked byte for byte through the gateway.
 * `Echo.Unary` echoes; `Echo.Fail` answers NOT_FOUND with a message (carried in trailers);
 * `Echo.Slow` answers after `ms` given in the request; `Echo.Count` streams N answers;
 * `Echo.Join` reads a stream and answers once; `Echo.Chat` echoes each message of a stream;
 * `Echo.Meta` answers with the request's `x-custom` metadata and sends `x-reply` as a response
 * header and `x-trailer` as a trailer.
 */
import * as grpc from '@grpc/grpc-js';

const bytes = {
  serialize: (s: string) => Buffer.from(s, 'utf8'),
  deserialize: (b: Buffer) => b.toString('utf8'),
};

function method(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<string, string> {
  return {
    path: `/test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  };
}

export const ECHO = {
  Unary: method('Unary', false, false),
  Fail: method('Fail', false, false),
  Slow: method('Slow', false, false),
  Count: method('Count', false, true),
  Join: method('Join', true, false),
  Chat: method('Chat', true, true),
  Meta: method('Meta', false, false),
} satisfies grpc.ServiceDefinition;

export interface EchoServer {
  port: number;
  /** Calls seen, by method name. */
  calls: string[];
  close(): Promise<void>;
}

/** A plaintext (h2c) gRPC server on an ephemeral loopback port. */
export async function startEchoServer(): Promise<EchoServer> {
  const server = new grpc.Server();
  const calls: string[] = [];
  server.addService(ECHO, {
    Unary: (call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => {
      calls.push('Unary');
      cb(null, `echo:${call.request}`);
    },
    Fail: (_call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => {
      calls.push('Fail');
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
    },
    Slow: (call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => {
      calls.push('Slow');
      setTimeout(() => cb(null, 'late'), Number(call.request)).unref();
    },
    Count: (call: grpc.ServerWritableStream<string, string>) => {
      calls.push('Count');
      const n = Number(call.request);
      for (let i = 1; i <= n; i++) call.write(`n${i}`);
      call.end();
    },
    Join: (call: grpc.ServerReadableStream<string, string>, cb: grpc.sendUnaryData<string>) => {
      calls.push('Join');
      const parts: string[] = [];
      call.on('data', (m: string) => parts.push(m));
      call.on('end', () => cb(null, parts.join('+')));
    },
    Meta: (call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => {
      calls.push('Meta');
      const head = new grpc.Metadata();
      head.set('x-reply', 'from-server');
      call.sendMetadata(head);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'at-the-end');
      cb(null, `custom:${String(call.metadata.get('x-custom')[0])}`, trailer);
    },
    Chat: (call: grpc.ServerDuplexStream<string, string>) => {
      calls.push('Chat');
      call.on('data', (m: string) => call.write(`re:${m}`));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    calls,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

export type EchoClient = grpc.Client & Record<keyof typeof ECHO, (...args: unknown[]) => unknown>;

/** A client of the Echo service at `address` (host:port), plaintext or with `credentials`. */
export function echoClient(address: string, credentials = grpc.credentials.createInsecure()): EchoClient {
  const Client = grpc.makeGenericClientConstructor(ECHO, 'Echo');
  return new Client(address, credentials) as unknown as EchoClient;
}

export function unary(client: EchoClient, name: 'Unary' | 'Fail' | 'Slow', message: string, deadlineMs?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    client[name](message, new grpc.Metadata(), options, (err: grpc.ServiceError | null, res: string) =>
      err ? reject(err) : resolve(res),
    );
  });
}

export function serverStream(client: EchoClient, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const call = client.Count(String(n)) as grpc.ClientReadableStream<string>;
    call.on('data', (m: string) => out.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

export function clientStream(client: EchoClient, parts: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = client.Join((err: grpc.ServiceError | null, res: string) => (err ? reject(err) : resolve(res))) as grpc.ClientWritableStream<string>;
    for (const p of parts) call.write(p);
    call.end();
  });
}

/** Sends each message only after the answer to the previous one: proof the stream is full duplex. */
export function chat(client: EchoClient, messages: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const call = client.Chat() as grpc.ClientDuplexStream<string, string>;
    let i = 0;
    call.on('data', (m: string) => {
      out.push(m);
      if (++i < messages.length) call.write(messages[i]);
      else call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
    call.write(messages[0]);
  });
}

export { grpc };
