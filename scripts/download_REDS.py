#!/usr/bin/env python3
"""Download and extract the REDS dataset (https://seungjunnah.github.io/Datasets/reds.html).

    python scripts/download_REDS.py --root data/REDS_raw \
        [--parts train_sharp train_sharp_bicubic val_sharp val_sharp_bicubic]

Each part ``<part>.zip`` is fetched from the SNU CVLab server
(``http://data.cv.snu.ac.kr:8008/webdav/dataset/REDS/<part>.zip``, the server BasicSR's
``download_REDS.py`` uses besides Google Drive) and extracted, so that afterwards

    <root>/train_sharp/000/00000000.png ...            (the zips hold train/train_sharp/...;
    <root>/train_sharp_bicubic/X4/000/00000000.png ...  the split folder is dropped)
    <root>/val_sharp/000/...
    <root>/val_sharp_bicubic/X4/000/...

Safe to interrupt and re-run:

* a download streams into ``<part>.zip.part`` and is renamed to ``<part>.zip`` only when it
  is complete (size checked against Content-Length); a re-run resumes a ``.part`` file with
  an HTTP range request when the server supports it, and skips finished zips;
* a zip is extracted into a hidden temporary folder that is renamed into place when the
  extraction succeeded, then ``<root>/.<part>.extracted`` is written; extracted parts are
  skipped on re-runs (also after ``regroup_reds_dataset.py`` emptied the val folders).

Without network access the script stops within ``--timeout`` seconds (default 10) with a
message naming the URL; download the zips by hand from the page above into ``--root`` and run
the script again: existing zips are only extracted.  Exit code: 0 on success, 1 on failure.
"""
import argparse
import os
import shutil
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ascendcv.utils.fileio import atomic_write_text, temp_path  # noqa: E402

BASE_URL = 'http://data.cv.snu.ac.kr:8008/webdav/dataset/REDS/'
MANUAL_PAGE = 'https://seungjunnah.github.io/Datasets/reds.html'
DEFAULT_PARTS = ('train_sharp', 'train_sharp_bicubic', 'val_sharp', 'val_sharp_bicubic')
KNOWN_PARTS = DEFAULT_PARTS + (
    'train_blur', 'train_blur_comp', 'train_blur_bicubic', 'train_blur_jpeg',
    'val_blur', 'val_blur_comp', 'val_blur_bicubic', 'val_blur_jpeg',
    'test_blur', 'test_blur_comp', 'test_sharp_bicubic', 'test_blur_bicubic')
CHUNK = 1 << 20  # 1 MiB


class DownloadError(RuntimeError):
    """A part could not be downloaded or extracted; the message says what to do."""


def part_url(part, base_url=BASE_URL):
    return base_url.rstrip('/') + '/' + part + '.zip'


def marker_path(root, part):
    return os.path.join(root, f'.{part}.extracted')


def _offline_message(url, reason, zip_path):
    return (f'Cannot download {url}: {reason}.\n'
            f'Check the network connection (or set http_proxy), or download '
            f'{os.path.basename(zip_path)} '
            f'by hand from {MANUAL_PAGE} (Google Drive or SNU server), save it as {zip_path} '
            f'and run this script again: existing zips are extracted without downloading.')


def _reason(exc, url, timeout):
    """Readable cause of a network failure."""
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(exc, socket.gaierror):
        return f'cannot resolve the host name {host!r} ({exc.strerror or exc}; no network?)'
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f'no answer from {host!r} within {timeout:g} s ({exc})'
    if isinstance(exc, ConnectionRefusedError):
        return f'connection to {host!r} refused'
    return str(exc)


def _resolve(host, port, timeout):
    """``getaddrinfo`` bounded by ``timeout`` (a stuck resolver can otherwise block ~30 s)."""
    result = {}

    def run():
        try:
            result['addr'] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result['error'] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise socket.timeout(f'resolving host {host!r} timed out after {timeout:g} s')
    if 'error' in result:
        raise result['error']


def _check_reachable(url, timeout):
    """Fail fast on DNS problems when no proxy handles the URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ('http', 'https') or not parsed.hostname:
        return
    proxies = urllib.request.getproxies()
    if parsed.scheme in proxies and not urllib.request.proxy_bypass(parsed.hostname):
        return  # the proxy resolves the name
    _resolve(parsed.hostname, parsed.port or (443 if parsed.scheme == 'https' else 80), timeout)


def _progress(total, initial, desc):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a runtime requirement
        return None
    return tqdm(total=total, initial=initial, unit='B', unit_scale=True, unit_divisor=1024,
                desc=desc, dynamic_ncols=True)


def download_file(url, dest, timeout=10.0, quiet=False):
    """Stream ``url`` into ``dest + '.part'`` and rename it to ``dest`` when complete.

    An existing ``.part`` file is resumed with a ``Range`` request; if the server ignores
    the range (answers 200), the download restarts from zero.

    Raises:
        DownloadError: network failure (names the URL and the manual download page),
            HTTP error, or a truncated transfer.
    """
    tmp = dest + '.part'
    have = os.path.getsize(tmp) if os.path.isfile(tmp) else 0
    headers = {'User-Agent': 'AscendVSR-download_REDS/1.0'}
    if have:
        headers['Range'] = f'bytes={have}-'
    try:
        _check_reachable(url, timeout)
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: the .part file is stale/complete
            os.remove(tmp)
            return download_file(url, dest, timeout=timeout, quiet=quiet)
        raise DownloadError(_offline_message(url, f'HTTP {exc.code} {exc.reason}', dest)) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(_offline_message(url, _reason(exc.reason, url, timeout), dest)) from exc
    except (OSError, ValueError) as exc:  # socket.timeout, connection reset, bad URL ...
        raise DownloadError(_offline_message(url, _reason(exc, url, timeout), dest)) from exc

    with response:
        status = getattr(response, 'status', 200)
        length = response.headers.get('Content-Length')
        length = int(length) if length and length.isdigit() else None
        if status == 206 and have:
            content_range = response.headers.get('Content-Range', '')
            if not content_range.startswith(f'bytes {have}-'):
                raise DownloadError(f'{url}: the server resumed at the wrong offset '
                                    f'(Content-Range {content_range!r}, expected byte {have}); '
                                    f'delete {tmp} and run the script again')
            mode, start = 'ab', have
            total = have + length if length is not None else None
        else:
            mode, start = 'wb', 0
            total = length
        if not quiet:
            resuming = f' (resuming at {have} bytes)' if start else ''
            print(f'Downloading {url} -> {dest}{resuming}', flush=True)
        bar = None if quiet else _progress(total, start, os.path.basename(dest))
        done = start
        try:
            with open(tmp, mode) as f:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, ValueError) as exc:
            raise DownloadError(
                f'Download of {url} interrupted after {done} bytes ({exc}); run the script '
                f'again to resume from {tmp}') from exc
        finally:
            if bar is not None:
                bar.close()
    if total is not None and done != total:
        raise DownloadError(f'Download of {url} is incomplete: got {done} of {total} bytes; run '
                            f'the script again to resume from {tmp}')
    os.replace(tmp, dest)
    return dest


def _safe_members(zf, target):
    """Zip members, refusing absolute paths and ``..`` escapes (zip slip)."""
    target = os.path.realpath(target)
    for info in zf.infolist():
        path = os.path.realpath(os.path.join(target, info.filename))
        if path != target and not path.startswith(target + os.sep):
            raise DownloadError(f'Refusing to extract {info.filename!r}: it points outside '
                                f'{target}')
    return zf.infolist()


def _find_part_folder(folder, part):
    """``folder/<part>`` or ``folder/<split>/<part>`` (how the REDS zips are organised)."""
    split = part.split('_', 1)[0]
    for candidate in (os.path.join(folder, part), os.path.join(folder, split, part)):
        if os.path.isdir(candidate):
            return candidate
    for name in sorted(os.listdir(folder)):  # any other single wrapping folder
        candidate = os.path.join(folder, name, part)
        if os.path.isdir(candidate):
            return candidate
    return None


def extract_part(zip_path, root, part, quiet=False):
    """Extract ``zip_path`` so that its ``<part>`` folder ends up at ``<root>/<part>``."""
    final = os.path.join(root, part)
    if os.path.exists(final):
        raise DownloadError(f'{final} already exists but {marker_path(root, part)} does not; '
                            f'remove {final} (incomplete?) and run the script again')
    staging = temp_path(final, 'extract')
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = _safe_members(zf, staging)
                iterator = members
                if not quiet:
                    from tqdm import tqdm
                    iterator = tqdm(members, desc=f'extracting {part}.zip', unit='file',
                                    dynamic_ncols=True)
                for info in iterator:
                    zf.extract(info, staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise DownloadError(f'{zip_path} is not a valid zip file ({exc}); delete it and run '
                                f'the script again to download it anew') from exc
        found = _find_part_folder(staging, part)
        if found is None:
            top = sorted(os.listdir(staging))
            raise DownloadError(f'{zip_path} does not contain a folder named {part!r} '
                                f'(top level: {top[:10]})')
        os.replace(found, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(marker_path(root, part), os.path.basename(zip_path) + '\n')
    return final


def fetch_part(root, part, base_url=BASE_URL, timeout=10.0, delete_zip=False, quiet=False):
    """Download (unless present) and extract (unless done) one REDS part."""
    if os.path.isfile(marker_path(root, part)):
        if not quiet:
            print(f'{part}: already downloaded and extracted, skipping', flush=True)
        return os.path.join(root, part)
    zip_path = os.path.join(root, part + '.zip')
    if os.path.isfile(zip_path):
        if not quiet:
            print(f'{part}: found {zip_path}, skipping the download', flush=True)
    else:
        download_file(part_url(part, base_url), zip_path, timeout=timeout, quiet=quiet)
    final = extract_part(zip_path, root, part, quiet=quiet)
    if delete_zip:
        os.remove(zip_path)
    if not quiet:
        print(f'{part}: extracted to {final}', flush=True)
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Download and extract REDS parts from the SNU CVLab server '
                    f'(manual download: {MANUAL_PAGE}).')
    parser.add_argument('--root', default='data/REDS_raw',
                        help='folder for the zips and extracted parts (default: data/REDS_raw)')
    parser.add_argument('--parts', nargs='+', default=list(DEFAULT_PARTS), choices=KNOWN_PARTS,
                        metavar='PART',
                        help='parts to fetch (default: %(default)s); one of: '
                             + ', '.join(KNOWN_PARTS))
    parser.add_argument('--base-url', default=BASE_URL,
                        help='server folder holding <part>.zip (default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='connect / read timeout in seconds (default: %(default)s)')
    parser.add_argument('--delete-zip', action='store_true',
                        help='delete each zip after a successful extraction')
    parser.add_argument('--quiet', action='store_true', help='no progress output')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    try:
        for part in args.parts:
            fetch_part(args.root, part, base_url=args.base_url, timeout=args.timeout,
                       delete_zip=args.delete_zip, quiet=args.quiet)
    except (DownloadError, OSError) as exc:  # OSError: disk full, permissions ...
        print(f'error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninterrupted; run the script again to resume', file=sys.stderr)
        return 130
    if not args.quiet:
        print(f'Done. Next: python scripts/regroup_reds_dataset.py --root {args.root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
