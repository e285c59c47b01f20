// Calls to the server extension under /af-dask/ (af_dask_lab/handlers.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IOptionSpec {
  field: string;
  label: string;
  default: number | string | boolean;
  spec: { type: 'int' | 'float' | 'select' | 'string' | 'bool'; min?: number; max?: number; options?: string[] };
}

export interface IBackend {
  name: string;
  label: string;
  kind: string;
  kind_label: string;
  description: string;
  workers: { min: number; max: number; default: number };
  idle_timeout_minutes: number;
  options: IOptionSpec[];
}

export interface ICluster {
  backend: string;
  name: string;
  status: string;
  options: Record<string, unknown>;
  dashboard_link: string | null;
  workers: number | null;
  desired_workers: number | null;
  cores: number | null;
  connect_code: string;
  warning?: string | null;
}

export interface IBackendError {
  backend: string;
  status: number;
  message: string;
}

/** An error answered by the server extension: the gateway's status and message. */
export class AfDaskError extends Error {
  constructor(
    public status: number,
    message: string
  ) {
    super(message);
  }
}

export async function call<T>(path: string, method = 'GET', body?: unknown): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'af-dask', path);
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  let reply: Response;
  try {
    reply = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new AfDaskError(0, `the notebook server does not answer: ${error}`);
  }
  const text = await reply.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!reply.ok) {
    const message = (data && data.message) || reply.statusText;
    throw new AfDaskError(reply.status, `${reply.status}: ${message}`);
  }
  return data as T;
}
