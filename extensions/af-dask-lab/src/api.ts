// Calls to the server extension under /af-dask/ (af_dask_lab/handlers.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IOptionSpec {
  field: string;
  label: string;
  default: number | string | boolean;
  spec: {
    type: 'int' | 'float' | 'select' | 'string' | 'bool';
    min?: number;
    max?: number;
    options?: string[];
    max_length?: number;
  };
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
  backend_label: string;
  name: string;
  display_name: string;
  status: string;
  options: Record<string, unknown>;
  worker_cores: number | null;
  worker_memory_gb: number | null;
  idle_timeout_minutes: number | null;
  start_time: number | null;
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
  plain: string;
}

export interface IPlot {
  label: string;
  url: string;
}

/** A refusal answered by the server extension; `message` is in plain words (af_dask_lab/messages.py). */
export class AfDaskError extends Error {
  constructor(
    public status: number,
    message: string
  ) {
    super(message);
  }
}

/** The notebook server does not answer, or the hub answers for it (its server is stopped). */
export class ServerGoneError extends AfDaskError {}

const SERVER_GONE =
  'Your notebook server has stopped, so this panel cannot reach your clusters. ' +
  'Start it again from File › Hub Control Panel; the panel reconnects by itself.';

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
  } catch {
    throw new ServerGoneError(0, SERVER_GONE);
  }
  const text = await reply.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not our JSON: the hub's or the proxy's HTML page (424 "server not running", 502, 503).
    throw new ServerGoneError(reply.status, SERVER_GONE);
  }
  if (!reply.ok) {
    if (!data || (data.plain === undefined && data.message === undefined)) {
      throw new ServerGoneError(reply.status, SERVER_GONE);
    }
    throw new AfDaskError(reply.status, data.plain || 'The request was refused: ' + data.message);
  }
  return data as T;
}
